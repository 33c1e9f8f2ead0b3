//! What a `docker save` archive says about its images: the image list read
//! from `manifest.json` (Docker's layout) or `index.json` (OCI), with each
//! image's id, tags, layers, creation time and size.

use super::tar::Entry;
use super::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One image described by a `docker save` archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveImage {
    pub id: String,
    pub tags: Vec<String>,
    pub layers: Vec<String>,
    pub created: Option<String>,
    pub size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Deserialize, Default)]
struct ImageConfig {
    created: Option<String>,
    #[serde(default)]
    rootfs: RootFs,
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciDescriptor {
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct OciManifest {
    config: Option<OciDescriptor>,
    #[serde(default)]
    layers: Vec<OciDescriptor>,
    /// Set when the "manifest" is itself an index (multi-platform).
    manifests: Option<Vec<OciDescriptor>>,
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn json<'a, T: Deserialize<'a>>(captured: &'a BTreeMap<String, Vec<u8>>, name: &str) -> Result<T> {
    let bytes = captured
        .get(name)
        .ok_or_else(|| Error::BadArchive(format!("{name} is missing")))?;
    serde_json::from_slice(bytes).map_err(|e| Error::BadArchive(format!("{name}: {e}")))
}

/// Reads the image list from `manifest.json` (Docker's layout, also written
/// beside the OCI layout by Docker 25 and later) or from `index.json` (OCI).
pub(super) fn parse_images(
    captured: &BTreeMap<String, Vec<u8>>,
    entries: &[Entry],
) -> Result<Vec<ArchiveImage>> {
    let size_of = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .map_or(0, |e| e.size)
    };
    if captured.contains_key("manifest.json") {
        let manifest: Vec<ManifestEntry> = json(captured, "manifest.json")?;
        return manifest
            .into_iter()
            .map(|m| {
                let config: ImageConfig = json(captured, &m.config)?;
                let file = m.config.rsplit('/').next().unwrap_or(&m.config);
                let hex = file.strip_suffix(".json").unwrap_or(file);
                Ok(ArchiveImage {
                    id: format!("sha256:{hex}"),
                    tags: m.repo_tags.unwrap_or_default(),
                    size: m.layers.iter().map(|l| size_of(l)).sum(),
                    layers: config.rootfs.diff_ids,
                    created: config.created,
                })
            })
            .collect();
    }
    if captured.contains_key("index.json") {
        let index: OciIndex = json(captured, "index.json")?;
        let mut out = Vec::new();
        let mut todo: Vec<(OciDescriptor, Vec<String>)> = index
            .manifests
            .into_iter()
            .map(|d| {
                let tags = [
                    "io.containerd.image.name",
                    "org.opencontainers.image.ref.name",
                ]
                .iter()
                .filter_map(|k| d.annotations.get(*k).cloned())
                .take(1)
                .collect();
                (d, tags)
            })
            .collect();
        while let Some((d, tags)) = todo.pop() {
            let m: OciManifest = json(captured, &blob_path(&d.digest))?;
            if let Some(inner) = m.manifests {
                todo.extend(inner.into_iter().map(|d| (d, tags.clone())));
                continue;
            }
            let Some(cfg) = m.config else { continue };
            let config: ImageConfig = json(captured, &blob_path(&cfg.digest)).unwrap_or_default();
            out.push(ArchiveImage {
                id: cfg.digest.clone(),
                tags,
                layers: config.rootfs.diff_ids,
                created: config.created,
                size: m.layers.iter().map(|l| l.size).sum(),
            });
        }
        return Ok(out);
    }
    Err(Error::BadArchive(
        "it holds neither manifest.json nor index.json".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::testing::{noise, segments, tar};
    use crate::docker::TarSplitter;

    #[test]
    fn classic_manifest_gives_the_images() {
        let config = br#"{"created":"2026-01-02T03:04:05Z","rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let manifest =
            br#"[{"Config":"ff00.json","RepoTags":["x/y:1"],"Layers":["abc/layer.tar"]}]"#;
        let t = tar(&[
            ("abc/layer.tar", noise(70_000, 5)),
            ("ff00.json", config.to_vec()),
            ("manifest.json", manifest.to_vec()),
        ]);
        let mut sp = TarSplitter::new(&t[..]);
        segments(&mut sp).unwrap();
        let imgs = sp.images().unwrap();
        assert_eq!(
            imgs,
            vec![ArchiveImage {
                id: "sha256:ff00".into(),
                tags: vec!["x/y:1".into()],
                layers: vec!["sha256:aa".into()],
                created: Some("2026-01-02T03:04:05Z".into()),
                size: 70_000,
            }]
        );
    }

    #[test]
    fn oci_index_gives_the_images() {
        let config = br#"{"created":"2026-01-02T03:04:05Z","rootfs":{"diff_ids":["sha256:11"]}}"#;
        let manifest = br#"{"config":{"digest":"sha256:cc","size":10},"layers":[{"digest":"sha256:11","size":70000}]}"#;
        let index = br#"{"manifests":[{"digest":"sha256:mm","size":99,"annotations":{"io.containerd.image.name":"x/y:2"}}]}"#;
        let t = tar(&[
            ("blobs/sha256/11", noise(70_000, 5)),
            ("blobs/sha256/cc", config.to_vec()),
            ("blobs/sha256/mm", manifest.to_vec()),
            ("index.json", index.to_vec()),
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ]);
        let mut sp = TarSplitter::new(&t[..]);
        segments(&mut sp).unwrap();
        let imgs = sp.images().unwrap();
        assert_eq!(imgs.len(), 1);
        assert_eq!(imgs[0].id, "sha256:cc");
        assert_eq!(imgs[0].tags, vec!["x/y:2".to_string()]);
        assert_eq!(imgs[0].layers, vec!["sha256:11".to_string()]);
        assert_eq!(imgs[0].size, 70_000);
    }
}
