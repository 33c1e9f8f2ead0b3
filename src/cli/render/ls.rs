//! `relic ls`: a snapshot's items as `ls -l` would show them, or as JSON.

use anyhow::Result;
use relic::snapshot::{Item, ItemKind};
use serde::Serialize;
use std::io::{self, Write};

/// One item as `relic ls --json` prints it.
#[derive(Serialize)]
struct Entry {
    path: String,
    kind: &'static str,
    mode: String,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blake3: Option<String>,
}

fn kind(k: ItemKind) -> &'static str {
    match k {
        ItemKind::Stream => "stream",
        ItemKind::File => "file",
        ItemKind::Dir => "dir",
        ItemKind::Symlink => "symlink",
    }
}

/// `drwxr-xr-x`: the type letter, then the permission bits (setuid,
/// setgid and sticky as `ls` shows them).
fn mode_string(i: &Item) -> String {
    let t = match i.kind {
        ItemKind::Dir => 'd',
        ItemKind::Symlink => 'l',
        ItemKind::File | ItemKind::Stream => '-',
    };
    let m = i.mode;
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    let exec = |x: u32, special: u32, set: char| match (m & x != 0, m & special != 0) {
        (true, true) => set,
        (false, true) => set.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        t,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        exec(0o100, 0o4000, 's'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        exec(0o010, 0o2000, 's'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        exec(0o001, 0o1000, 't'),
    ]
    .iter()
    .collect()
}

fn mtime(i: &Item) -> String {
    if i.kind == relic::snapshot::ItemKind::Stream && i.mtime_ns == 0 {
        return "-".into();
    }
    jiff::Timestamp::from_nanosecond(i.mtime_ns as i128)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Writes the items as lines (`mode size mtime path [-> target]`) or, with
/// `json`, one JSON array.
pub fn ls(items: &[Item], json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        let entries: Vec<Entry> = items
            .iter()
            .map(|i| Entry {
                path: i.path_lossy(),
                kind: kind(i.kind),
                mode: format!("{:04o}", i.mode & 0o7777),
                uid: i.uid,
                gid: i.gid,
                size: i.size,
                mtime: jiff::Timestamp::from_nanosecond(i.mtime_ns as i128)
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                    .to_string(),
                target: i
                    .target
                    .as_ref()
                    .map(|t| String::from_utf8_lossy(t).into_owned()),
                blake3: matches!(i.kind, ItemKind::File | ItemKind::Stream)
                    .then(|| hex::encode(i.hash)),
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &entries)?;
        writeln!(out)?;
        return Ok(());
    }
    for i in items {
        let path = i.path_lossy().escape_debug().to_string();
        match &i.target {
            Some(t) => writeln!(
                out,
                "{} {:>12} {} {path} -> {}",
                mode_string(i),
                i.size,
                mtime(i),
                String::from_utf8_lossy(t).escape_debug()
            )?,
            None => writeln!(out, "{} {:>12} {} {path}", mode_string(i), i.size, mtime(i))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_shows_them() {
        let item = |kind, mode| Item {
            path: b"x".to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            size: 0,
            hash: [0; 32],
            target: None,
            content: Default::default(),
        };
        assert_eq!(mode_string(&item(ItemKind::Dir, 0o755)), "drwxr-xr-x");
        assert_eq!(mode_string(&item(ItemKind::File, 0o4755)), "-rwsr-xr-x");
        assert_eq!(mode_string(&item(ItemKind::File, 0o2640)), "-rw-r-S---");
        assert_eq!(mode_string(&item(ItemKind::Dir, 0o1777)), "drwxrwxrwt");
        assert_eq!(mode_string(&item(ItemKind::Symlink, 0o777)), "lrwxrwxrwx");
    }
}
