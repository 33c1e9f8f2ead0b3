//! Retagging, for restore drills: [`Retag`] rewrites the tags of a
//! `docker save` tar as it is written through, and [`load_scratch`] loads a
//! snapshot's images under scratch tags and checks them.

use super::tar::{parse_header, BLOCK, CAPTURE_MAX};
use super::{items_for, records, select, Check, Engine, Error, Result};
use crate::progress::{Progress, Unit};
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use std::io::{self, Write};

/// Rewrites the tags of a `docker save` tar as it is written through:
/// `manifest.json` and `repositories` get `rename(tag)` for every tag, with
/// their tar headers (size, checksum) made to match; every other byte passes
/// unchanged. A drill loads images under scratch tags this way, so the tags
/// production uses never move.
pub struct Retag<W: Write, F: Fn(&str) -> String> {
    inner: W,
    rename: F,
    buf: Vec<u8>,
    state: RetagState,
}

enum RetagState {
    Header,
    /// Passing `left` bytes of data and padding through.
    Data(u64),
    /// Collecting a small JSON entry to rewrite: its header and size.
    Capture(Box<[u8; BLOCK]>, String, u64),
    Trailer,
}

impl<W: Write, F: Fn(&str) -> String> Retag<W, F> {
    pub fn new(inner: W, rename: F) -> Self {
        Retag {
            inner,
            rename,
            buf: Vec::new(),
            state: RetagState::Header,
        }
    }

    fn rewrite(&self, name: &str, data: &[u8]) -> io::Result<Vec<u8>> {
        let bad = |e: serde_json::Error| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}"))
        };
        let mut v: serde_json::Value = serde_json::from_slice(data).map_err(bad)?;
        if name == "manifest.json" {
            for m in v.as_array_mut().into_iter().flatten() {
                if let Some(tags) = m.get_mut("RepoTags").and_then(|t| t.as_array_mut()) {
                    for t in tags.iter_mut() {
                        if let Some(s) = t.as_str() {
                            *t = serde_json::Value::String((self.rename)(s));
                        }
                    }
                }
            }
        } else if let Some(repos) = v.as_object() {
            let mut out = serde_json::Map::new();
            for (repo, tags) in repos {
                for (tag, id) in tags.as_object().into_iter().flatten() {
                    let new = (self.rename)(&format!("{repo}:{tag}"));
                    let (r, t) = new.rsplit_once(':').unwrap_or((&new, "latest"));
                    out.entry(r.to_string())
                        .or_insert_with(|| serde_json::Value::Object(Default::default()))
                        .as_object_mut()
                        .expect("object")
                        .insert(t.to_string(), id.clone());
                }
            }
            v = serde_json::Value::Object(out);
        }
        Ok(serde_json::to_vec(&v).expect("json serializes"))
    }

    /// Processes what `buf` holds; leaves an incomplete block or entry.
    fn pump(&mut self) -> io::Result<()> {
        loop {
            match &mut self.state {
                RetagState::Trailer => {
                    self.inner.write_all(&self.buf)?;
                    self.buf.clear();
                    return Ok(());
                }
                RetagState::Data(left) => {
                    let n = (*left).min(self.buf.len() as u64) as usize;
                    self.inner.write_all(&self.buf[..n])?;
                    self.buf.drain(..n);
                    *left -= n as u64;
                    if *left > 0 {
                        return Ok(());
                    }
                    self.state = RetagState::Header;
                }
                RetagState::Header => {
                    if self.buf.len() < BLOCK {
                        return Ok(());
                    }
                    let h: [u8; BLOCK] = self.buf[..BLOCK].try_into().expect("one block");
                    if h.iter().all(|&b| b == 0) {
                        self.state = RetagState::Trailer;
                        continue;
                    }
                    let hdr = parse_header(&h)
                        .map_err(|w| io::Error::new(io::ErrorKind::InvalidData, w))?;
                    let size = if matches!(hdr.typeflag, b'1'..=b'6') {
                        0
                    } else {
                        hdr.size
                    };
                    self.buf.drain(..BLOCK);
                    let regular = matches!(hdr.typeflag, b'0' | 0);
                    if regular
                        && (hdr.name == "manifest.json" || hdr.name == "repositories")
                        && size <= CAPTURE_MAX
                    {
                        self.state = RetagState::Capture(Box::new(h), hdr.name, size);
                    } else {
                        self.inner.write_all(&h)?;
                        self.state = RetagState::Data(size.div_ceil(BLOCK as u64) * BLOCK as u64);
                    }
                }
                RetagState::Capture(h, name, size) => {
                    let padded = (size.div_ceil(BLOCK as u64) * BLOCK as u64) as usize;
                    if self.buf.len() < padded {
                        return Ok(());
                    }
                    let (mut h, name, size) = (**h, name.clone(), *size as usize);
                    let data = self.rewrite(&name, &self.buf[..size])?;
                    self.buf.drain(..padded);
                    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
                    h[148..156].copy_from_slice(b"        ");
                    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
                    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
                    self.inner.write_all(&h)?;
                    self.inner.write_all(&data)?;
                    let pad = data.len().div_ceil(BLOCK) * BLOCK - data.len();
                    self.inner.write_all(&vec![0; pad])?;
                    self.state = RetagState::Header;
                }
            }
        }
    }
}

impl<W: Write, F: Fn(&str) -> String> Write for Retag<W, F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let RetagState::Data(left) = self.state {
            // The bulk of a tar: straight through, no copy.
            if self.buf.is_empty() && left >= data.len() as u64 {
                self.inner.write_all(data)?;
                self.state = if left == data.len() as u64 {
                    RetagState::Header
                } else {
                    RetagState::Data(left - data.len() as u64)
                };
                return Ok(data.len());
            }
        }
        self.buf.extend_from_slice(data);
        self.pump()?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pump()?;
        self.inner.flush()
    }
}

/// Loads the selected images under scratch tags (`rename` gives each
/// recorded tag's scratch name) and checks them; returns the checks and the
/// scratch tags loaded, for the caller to remove.
pub fn load_scratch(
    repo: &Repository,
    snap: &Snapshot,
    rename: &(dyn Fn(&str) -> String + Sync),
    progress: &dyn Progress,
) -> Result<(Vec<Check>, Vec<String>)> {
    let selected = select(&records(snap)?, None)?;
    let items = items_for(repo, snap, &selected)?;
    let engine = Engine::connect()?;
    for item in &items {
        progress.start("loading", Some(item.size), Unit::Bytes);
        engine.load(|w| {
            let mut r = Retag::new(w, rename);
            repo.restore_item(item, &mut r, progress)
        })?;
        progress.finish();
    }
    let mut checks = Vec::new();
    let mut scratch = Vec::new();
    for r in &selected {
        for tag in &r.tags {
            let name = rename(tag);
            let found = match engine.inspect(&name) {
                Ok(i) => i.id,
                Err(Error::NoSuchImage { .. }) => "(missing)".into(),
                Err(e) => return Err(e),
            };
            checks.push(Check {
                what: format!("image {tag} (as {name})"),
                ok: found == r.id,
                expected: r.id.clone(),
                found,
            });
            scratch.push(name);
        }
    }
    Ok((checks, scratch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::testing::{noise, segments, tar};
    use crate::docker::TarSplitter;

    #[test]
    fn retag_rewrites_only_the_tags() {
        let manifest = br#"[{"Config":"ff.json","RepoTags":["app/x:1"],"Layers":["l/layer.tar"]}]"#;
        let repos = br#"{"app/x":{"1":"ff"}}"#;
        let layer = noise(150_000, 4);
        let t = tar(&[
            ("l/layer.tar", layer.clone()),
            ("ff.json", b"{}".to_vec()),
            ("manifest.json", manifest.to_vec()),
            ("repositories", repos.to_vec()),
        ]);
        // Written in awkward pieces, as a restore might.
        let mut out = Vec::new();
        let mut r = Retag::new(&mut out, |t: &str| {
            format!("drill/{}", t.replace([':', '/'], "_")) + ":d"
        });
        for piece in t.chunks(777) {
            r.write_all(piece).unwrap();
        }
        r.flush().unwrap();
        let mut sp = TarSplitter::new(&out[..]);
        segments(&mut sp).unwrap();
        let imgs = sp.images().unwrap();
        assert_eq!(imgs[0].tags, vec!["drill/app_x_1:d".to_string()]);
        assert_eq!(imgs[0].size, 150_000);
        let start = out
            .windows(layer.len().min(64))
            .position(|w| w == &layer[..64])
            .unwrap();
        assert_eq!(
            &out[start..start + layer.len()],
            &layer[..],
            "layer bytes untouched"
        );
        assert!(String::from_utf8_lossy(&out).contains(r#"{"drill/app_x_1":{"d":"ff"}}"#));
    }
}
