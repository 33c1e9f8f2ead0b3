//! Tags a load moves: before an image is loaded under a tag that points at
//! another image now, that image gets a tag of its own
//! (`relic-replaced/<tag>:<UTC time>`), so it stays reachable instead of
//! dangling.

use super::{Engine, Error, ImageRecord, Result};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The repository every kept image is tagged under.
pub const REPLACED_REPO: &str = "relic-replaced";

/// A tag a load will move off another image, and the tag that keeps that
/// image reachable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    /// The tag the load moves.
    pub tag: String,
    /// The image it points at now.
    pub old_id: String,
    /// `relic-replaced/<tag, sanitized>:<YYYYmmdd-HHMMSS, UTC>`.
    pub kept_as: String,
}

/// The time in every kept tag this process makes, fixed at its first use:
/// a restore that plans its replacements before it loads (to record them
/// in its safety snapshot) gets the same names when it loads.
fn stamp() -> &'static str {
    static STAMP: OnceLock<String> = OnceLock::new();
    STAMP.get_or_init(|| jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string())
}

/// `tag` as one component of a repository name: lower-case letters and
/// digits, every run of anything else one `-`, no `-` at either end.
fn sanitize(tag: &str) -> String {
    let mut out = String::new();
    for c in tag.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.trim_end_matches('-').chars().take(128).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("image");
    }
    out
}

/// The tag that keeps the image `tag` points at now reachable.
fn kept_as(tag: &str) -> String {
    format!("{REPLACED_REPO}/{}:{}", sanitize(tag), stamp())
}

/// The tags of `records` that point at another image than the recorded
/// one in the engine now, each with the tag that will keep that image.
pub fn replacements(engine: &Engine, records: &[ImageRecord]) -> Result<Vec<Replaced>> {
    let mut out: Vec<Replaced> = Vec::new();
    for r in records {
        for tag in r.all_tags() {
            let now = match engine.inspect(tag) {
                Ok(i) => i.id,
                Err(Error::NoSuchImage { .. }) => continue,
                Err(e) => return Err(e),
            };
            if now != r.id && !out.iter().any(|o| &o.tag == tag) {
                out.push(Replaced {
                    tag: tag.clone(),
                    old_id: now,
                    kept_as: kept_as(tag),
                });
            }
        }
    }
    Ok(out)
}

/// Tags the replaced image with its `kept_as` tag.
pub(super) fn keep(engine: &Engine, r: &Replaced) -> Result<()> {
    let (repo, tag) = r.kept_as.rsplit_once(':').expect("kept_as has a tag");
    engine.tag(&r.old_id, repo, tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_tags_are_valid_repository_names() {
        assert_eq!(sanitize("app:1"), "app-1");
        assert_eq!(
            sanitize("Registry.example:5000/team/Web_App:1.2"),
            "registry-example-5000-team-web-app-1-2"
        );
        assert_eq!(sanitize("--/__"), "image");
        assert_eq!(sanitize(&"a-".repeat(200)).len(), 127);
        let k = kept_as("x/y:z");
        let (repo, tag) = k.rsplit_once(':').unwrap();
        assert_eq!(repo, "relic-replaced/x-y-z");
        assert_eq!(tag.len(), 15, "{tag}");
        assert!(tag.chars().all(|c| c.is_ascii_digit() || c == '-'), "{tag}");
        assert_eq!(kept_as("x/y:z"), k, "one time per process");
    }
}
