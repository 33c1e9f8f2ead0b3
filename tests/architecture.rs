//! The rules `docs/design.md` states for the source tree, checked on every
//! test run: no source file over 600 lines (unit tests aside), no import
//! cycle between the library's top-level modules, the repository's files
//! touched only by `store/` and the user's only by `files/`, and the exit
//! status decided only by `main.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

/// Every `.rs` file under `src/`, relative to it, with its text minus its
/// unit tests (a trailing `#[cfg(test)]` module, or a whole test file).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let name = p.file_name().unwrap().to_string_lossy();
            if name == "tests.rs" || name == "testing.rs" {
                return None;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            Some((rel, code))
        })
        .collect()
}

/// The library's top-level module a file belongs to (None: the binary).
fn module_of(rel: &str) -> Option<String> {
    let top = rel.split('/').next().unwrap().trim_end_matches(".rs");
    (!matches!(top, "cli" | "main" | "lib")).then(|| top.to_string())
}

#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|(_, code)| code.lines().count() > MAX_LINES)
        .map(|(rel, code)| format!("{rel}: {} lines", code.lines().count()))
        .collect();
    assert!(long.is_empty(), "split these by subject: {long:?}");
}

#[test]
fn no_import_cycle_between_modules() {
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let files = sources();
    let modules: BTreeSet<String> = files.iter().filter_map(|(r, _)| module_of(r)).collect();
    for (rel, code) in &files {
        let Some(m) = module_of(rel) else { continue };
        let set = uses.entry(m.clone()).or_default();
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for part in code.split("crate::").skip(1) {
            let used: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if used != m && modules.contains(&used) {
                set.insert(used);
            }
        }
    }
    // A module that reaches itself through the others is on a cycle.
    for start in uses.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<(&String, Vec<&String>)> = vec![(start, vec![start])];
        while let Some((at, path)) = todo.pop() {
            for next in uses.get(at).into_iter().flatten() {
                assert!(
                    next != start,
                    "import cycle: {} -> {start}",
                    path.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" -> ")
                );
                if seen.insert(next) {
                    let mut p = path.clone();
                    p.push(next);
                    todo.push((next, p));
                }
            }
        }
    }
}

#[test]
fn only_store_and_files_touch_files_and_only_main_exits() {
    let mut found = Vec::new();
    for (rel, code) in sources() {
        let fs_ok = rel.starts_with("store/") || rel.starts_with("files/");
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            if !fs_ok
                && (line.contains("std::fs") || line.contains("fs::"))
                && !line.contains("os::unix::fs")
            {
                found.push(format!("src/{rel}:{}: {line}", n + 1));
            }
            if rel != "main.rs" && line.contains("process::exit") {
                found.push(format!("src/{rel}:{}: {line}", n + 1));
            }
        }
    }
    assert!(found.is_empty(), "outside their module: {found:#?}");
}
