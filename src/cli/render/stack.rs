//! Stacks for people: a manifest as Markdown (`relic manifest`). Sizes
//! here are `human`'s one-decimal binary units, as these reports have
//! always shown.

use relic::stack::Manifest;
use relic::{Snapshot, SnapshotId};
use std::fmt::Write;

/// The first `n` characters (ids and commits are ASCII hex).
pub(super) fn head(s: &str, n: usize) -> &str {
    &s[..n.min(s.len())]
}

/// A byte count for people: `512 B`, `1.5 MiB`.
pub(super) fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// A stack snapshot's manifest as Markdown.
pub fn manifest(id: &SnapshotId, snap: &Snapshot, m: &Manifest) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Stack snapshot {} ({})\n", id.short(), m.stack);
    let _ = writeln!(s, "- name: {}", snap.name);
    let _ = writeln!(s, "- tier: {}", snap.tier);
    let _ = writeln!(
        s,
        "- time: {}",
        snap.time().strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(s, "- host: {}", snap.host);
    for (k, v) in &snap.labels {
        let _ = writeln!(s, "- label {k}: {v}");
    }
    if let Some(g) = &m.git {
        let _ = writeln!(
            s,
            "- git: {} at {}{}",
            g.path,
            g.commit,
            if g.dirty {
                " (uncommitted changes)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(s, "- config: {}", m.config);
    if !m.databases.is_empty() {
        let _ = writeln!(s, "\n## Databases\n");
        let _ = writeln!(
            s,
            "| part | database | server | alembic | tables | rows | dump | blake3 |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for d in &m.databases {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                d.name,
                d.database,
                d.server_version,
                d.alembic_revision.as_deref().unwrap_or("-"),
                d.tables.len(),
                d.tables.iter().map(|t| t.rows).sum::<i64>(),
                human(d.size),
                head(&d.blake3, 16)
            );
        }
    }
    if !m.images.is_empty() {
        let _ = writeln!(s, "\n## Images\n");
        let _ = writeln!(s, "| reference | image id | layers | size | created |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for i in &m.images {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                i.reference,
                head(&i.id, 19),
                i.layers.len(),
                human(i.size),
                i.created.as_deref().unwrap_or("-")
            );
        }
    }
    if let Some(f) = &m.files {
        let _ = writeln!(s, "\n## Files\n");
        let _ = writeln!(
            s,
            "{} entries, {} under {}: {}",
            f.entries,
            human(f.bytes),
            f.root,
            f.paths.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\n## Restore\n\n```sh\n{}\n```",
        m.restore_command.replace("<this snapshot>", &id.short())
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 << 40), "5.0 TiB");
        assert_eq!(head("abc", 19), "abc");
        assert_eq!(head("abcdef", 2), "ab");
    }
}
