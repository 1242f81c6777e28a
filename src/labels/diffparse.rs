//! Extracting the changed lines of a unified diff, the input of every label.
//!
//! Contract (the parsing rule of the label metric; `benches/labels_ref.py` is the same rule in
//! Python and the parity tests hold the two together):
//! - the text is split on `\n` and one trailing `\r` is removed from every line;
//! - a hunk is the run of lines after a `@@ -a[,b] +c[,d] @@` header, as long as its counts
//!   say (`b`, `d` default to 1): ` ` and empty lines count for both sides, `-` for the old
//!   side, `+` for the new side, `\` lines for neither;
//! - outside hunks, `--- X` / `+++ Y` set the old / new path: the text up to the first tab, with
//!   one leading `a/` or `b/` removed (so `--- x` inside a hunk is a removed line `-- x`);
//! - every `-`/`+` line inside a hunk is a changed line, keyed by (path, line) where path is the
//!   new path, or the old one when the new path is `/dev/null`. The line keeps its `-`/`+`.
//!
//! Malformed input never panics. Two rules cover what well-formed diffs never contain: counts
//! never go below zero (a surplus `-` or `+` line is still a changed line of the hunk), and a
//! line starting with any other character ends the hunk early and is read as a line outside
//! hunks (so a truncated hunk followed by a new `@@` header or `diff --git` line recovers).
//! Paths start empty until the first header.

/// One changed line: the file it belongs to and the line itself (with its `-`/`+`).
///
/// Equal keys are exactly equal `<path>\t<line>` strings: a path never holds a tab.
pub type Key<'a> = (&'a str, &'a str);

/// Calls `f` with every changed line of `diff`, in order.
pub fn for_each_changed_line<'a>(diff: &'a str, mut f: impl FnMut(Key<'a>)) {
    let mut old: &str = "";
    let mut new: &str = "";
    // Lines left on the old and new side of the current hunk.
    let (mut left_old, mut left_new) = (0u64, 0u64);
    for raw in diff.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if left_old > 0 || left_new > 0 {
            match line.as_bytes().first() {
                None | Some(b' ') => {
                    left_old = left_old.saturating_sub(1);
                    left_new = left_new.saturating_sub(1);
                    continue;
                }
                Some(b'-') => {
                    left_old = left_old.saturating_sub(1);
                    f((key_path(old, new), line));
                    continue;
                }
                Some(b'+') => {
                    left_new = left_new.saturating_sub(1);
                    f((key_path(old, new), line));
                    continue;
                }
                Some(b'\\') => continue,
                Some(_) => {
                    // Not a hunk line: the hunk was cut short; read it as a line outside hunks.
                    left_old = 0;
                    left_new = 0;
                }
            }
        }
        if let Some((b, d)) = hunk_counts(line) {
            left_old = b;
            left_new = d;
        } else if let Some(rest) = line.strip_prefix("--- ") {
            old = header_path(rest);
        } else if let Some(rest) = line.strip_prefix("+++ ") {
            new = header_path(rest);
        }
    }
}

/// Every changed line of `diff`, in order.
pub fn changed_lines(diff: &str) -> Vec<Key<'_>> {
    let mut out = Vec::new();
    for_each_changed_line(diff, |k| out.push(k));
    out
}

/// The key's path: the new path, or the old one when the file was deleted.
fn key_path<'a>(old: &'a str, new: &'a str) -> &'a str {
    if new == "/dev/null" {
        old
    } else {
        new
    }
}

/// The path of a `---`/`+++` header: up to the first tab, one `a/` or `b/` removed.
fn header_path(rest: &str) -> &str {
    let p = rest.split('\t').next().unwrap_or("");
    p.strip_prefix("a/").or_else(|| p.strip_prefix("b/")).unwrap_or(p)
}

/// The old and new line counts of a `@@ -a[,b] +c[,d] @@` header (anything may follow).
fn hunk_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("@@ -")?;
    let (_, rest) = number(rest)?;
    let (b, rest) = match rest.strip_prefix(',') {
        Some(r) => number(r)?,
        None => (1, rest),
    };
    let rest = rest.strip_prefix(" +")?;
    let (_, rest) = number(rest)?;
    let (d, rest) = match rest.strip_prefix(',') {
        Some(r) => number(r)?,
        None => (1, rest),
    };
    rest.strip_prefix(" @@")?;
    Some((b, d))
}

/// A run of ASCII digits (at least one); huge values saturate, which no real diff can reach.
fn number(s: &str) -> Option<(u64, &str)> {
    let end = s.bytes().position(|c| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let value = s[..end].bytes().fold(0u64, |acc, c| acc.saturating_mul(10).saturating_add(u64::from(c - b'0')));
    Some((value, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(d: &str) -> Vec<String> {
        changed_lines(d).into_iter().map(|(p, l)| format!("{p}\t{l}")).collect()
    }

    #[test]
    fn basic_hunk() {
        let d = "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n d\n";
        assert_eq!(keys(d), vec!["x\t-b", "x\t+c"]);
    }

    #[test]
    fn removed_dash_line_is_not_a_header() {
        let d = "--- a/x\n+++ b/x\n@@ -1,2 +1 @@\n--- y\n keep\n";
        assert_eq!(keys(d), vec!["x\t--- y"]);
    }

    #[test]
    fn deleted_file_uses_old_path_and_crlf_is_stripped() {
        let d = "--- a/gone\r\n+++ /dev/null\r\n@@ -1 +0,0 @@\r\n-bye\r\n\\ No newline at end of file\r\n";
        assert_eq!(keys(d), vec!["gone\t-bye"]);
    }

    #[test]
    fn tab_cut_and_defaults() {
        let d = "--- a/p q\t2020-01-01\n+++ b/p q\t2020-01-02\n@@ -1 +1 @@\n-x\n+y\n+outside\n";
        assert_eq!(keys(d), vec!["p q\t-x", "p q\t+y"]);
    }

    #[test]
    fn no_newline_marker_counts_for_neither_side() {
        let d =
            "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-old\n\\ No newline at end of file\n+new\n\\ No newline at end of file\n";
        assert_eq!(keys(d), vec!["f\t-old", "f\t+new"]);
    }

    #[test]
    fn malformed_headers_are_ignored() {
        assert!(keys("@@ -x +1 @@\n-a\n").is_empty());
        assert!(keys("@@ -1, +1 @@\n-a\n").is_empty());
        assert_eq!(keys("@@ -99999999999999999999999 +1 @@\n-a\n"), vec!["\t-a"]);
        assert!(keys("").is_empty());
    }

    #[test]
    fn truncated_hunk_recovers_at_next_header() {
        let d = "--- a/f\n+++ b/f\n@@ -1,9 +1,9 @@\n-a\ndiff --git a/g b/g\n--- a/g\n+++ b/g\n@@ -1 +1 @@\n-b\n+c\n";
        assert_eq!(keys(d), vec!["f\t-a", "g\t-b", "g\t+c"]);
    }
}
