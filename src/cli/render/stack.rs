//! Stacks for people. Sizes here are `human`'s one-decimal binary units, as
//! these reports have always shown.

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
