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
//!
//! The rule is written once, in [`parse`], over a [`LineSource`]: plain text ([`TextSource`])
//! or a JSON string literal ([`super::jsonstr::JsonStrSource`]), which lets `label --pairs`
//! read diffs straight from the JSON without unescaping the lines that cannot matter (context
//! lines are classified by their first character only). A source hands out changed lines as
//! keys ([`LineSource::key`]): any text that maps one-to-one to the line's text, the same way
//! for both diffs of a pair.

/// One changed line: the file it belongs to and the line itself (with its `-`/`+`).
///
/// Equal keys are exactly equal `<path>\t<line>` strings: a path never holds a tab.
pub type Key<'a> = (&'a str, &'a str);

/// Where a piece of text lives: bytes `start..end` of the source's input, or of its buffer of
/// decoded lines. Eight bytes (the top bit of `start` says which buffer), so that a span
/// travels in a register: as a 12-byte enum it went through the stack on every changed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

/// Which buffer a span is in (see [`Span::range`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    Input,
    Decoded,
}

impl Span {
    const DECODED: u32 = 1 << 31;
    /// Texts and decoded buffers hold fewer bytes than this.
    pub const LIMIT: usize = 1 << 31;
    /// The empty path (before any header).
    pub const EMPTY: Span = Span { start: 0, end: 0 };

    /// `input[start..end]`.
    #[inline]
    pub fn input(start: u32, end: u32) -> Span {
        debug_assert!((start as usize) < Span::LIMIT && (end as usize) < Span::LIMIT);
        Span { start, end }
    }

    /// `decoded[start..end]`.
    #[inline]
    pub fn decoded(start: u32, end: u32) -> Span {
        debug_assert!((start as usize) < Span::LIMIT && (end as usize) < Span::LIMIT);
        Span { start: start | Span::DECODED, end }
    }

    /// The number of bytes.
    #[inline]
    pub fn len(self) -> usize {
        self.range().1.len()
    }

    /// Whether the span holds no bytes.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The buffer and the byte range.
    #[inline]
    pub fn range(self) -> (Buffer, std::ops::Range<usize>) {
        let buffer = if self.start & Span::DECODED == 0 { Buffer::Input } else { Buffer::Decoded };
        (buffer, (self.start & !Span::DECODED) as usize..self.end as usize)
    }

    /// The part of this span that `sub` (a slice of `whole`, this span's text) covers.
    fn narrow(self, whole: &[u8], sub: &[u8]) -> Span {
        let from = (sub.as_ptr() as usize - whole.as_ptr() as usize) as u32;
        let to = from + sub.len() as u32;
        Span { start: self.start + from, end: (self.start & !Span::DECODED) + to }
    }
}

/// Lines of a diff, handed out lazily: a line is only materialized when the rule needs its text.
pub trait LineSource {
    /// A handle on one line (without its `\n`, one trailing `\r` already removed).
    type Line: Copy;
    /// The next line, or `None` at the end of the text.
    fn next_line(&mut self) -> Option<Self::Line>;
    /// The line's first byte (of its decoded UTF-8 text); `None` for an empty line.
    fn first_byte(&self, line: Self::Line) -> Option<u8>;
    /// The line's full (decoded) text.
    fn text(&mut self, line: Self::Line) -> Span;
    /// The line as a key: a one-to-one encoding of its text (by default the text itself).
    fn key(&mut self, line: Self::Line) -> Span {
        self.text(line)
    }
    /// The bytes of a span returned by [`LineSource::text`] or [`LineSource::key`] (or a part
    /// of one).
    fn resolve(&self, span: Span) -> &[u8];
    /// The bytes of a span's buffer from the span's start to the end of the buffer (the span
    /// is the first [`Span::len`] of them): lets a key be read in fixed-size blocks.
    fn tail(&self, span: Span) -> &[u8];
}

/// Lines of plain text.
pub struct TextSource<'a> {
    text: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> TextSource<'a> {
    pub fn new(text: &'a str) -> TextSource<'a> {
        assert!(text.len() < Span::LIMIT, "diff larger than 2 GiB");
        TextSource { text, pos: 0, done: false }
    }
}

impl LineSource for TextSource<'_> {
    type Line = (u32, u32);

    fn next_line(&mut self) -> Option<(u32, u32)> {
        if self.done {
            return None;
        }
        let rest = &self.text.as_bytes()[self.pos..];
        let start = self.pos;
        let mut end = match memchr::memchr(b'\n', rest) {
            Some(i) => {
                self.pos += i + 1;
                start + i
            }
            None => {
                self.done = true;
                self.text.len()
            }
        };
        if end > start && self.text.as_bytes()[end - 1] == b'\r' {
            end -= 1;
        }
        Some((start as u32, end as u32))
    }

    fn first_byte(&self, (s, e): (u32, u32)) -> Option<u8> {
        (s < e).then(|| self.text.as_bytes()[s as usize])
    }

    fn text(&mut self, (s, e): (u32, u32)) -> Span {
        Span::input(s, e)
    }

    fn resolve(&self, span: Span) -> &[u8] {
        match span.range() {
            (Buffer::Input, r) => &self.text.as_bytes()[r],
            (Buffer::Decoded, _) => b"",
        }
    }

    fn tail(&self, span: Span) -> &[u8] {
        match span.range() {
            (Buffer::Input, r) => &self.text.as_bytes()[r.start..],
            (Buffer::Decoded, _) => b"",
        }
    }
}

/// Runs the parsing rule over `src`, calling `f(path, line)` for every changed line in order.
pub fn parse<S: LineSource>(src: &mut S, mut f: impl FnMut(&S, Span, Span)) {
    let mut old = Span::EMPTY;
    // The key path: the new path, or the old one when the new one is /dev/null.
    let mut path = Span::EMPTY;
    let mut new_is_null = false;
    // Lines left on the old and new side of the current hunk.
    let (mut left_old, mut left_new) = (0u64, 0u64);
    while let Some(line) = src.next_line() {
        let first = src.first_byte(line);
        if left_old > 0 || left_new > 0 {
            match first {
                None | Some(b' ') => {
                    left_old = left_old.saturating_sub(1);
                    left_new = left_new.saturating_sub(1);
                    continue;
                }
                Some(c @ (b'-' | b'+')) => {
                    // One path for both kinds (a branch the lines' order makes hard to predict).
                    let minus = c == b'-';
                    left_old = left_old.saturating_sub(u64::from(minus));
                    left_new = left_new.saturating_sub(u64::from(!minus));
                    let k = src.key(line);
                    f(src, path, k);
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
        if !matches!(first, Some(b'@' | b'-' | b'+')) {
            continue;
        }
        let span = src.text(line);
        let text = src.resolve(span);
        if let Some((b, d)) = hunk_counts(text) {
            left_old = b;
            left_new = d;
        } else if let Some(rest) = text.strip_prefix(b"--- ") {
            old = span.narrow(text, header_path(rest));
            if new_is_null {
                path = old;
            }
        } else if let Some(rest) = text.strip_prefix(b"+++ ") {
            let p = header_path(rest);
            new_is_null = p == b"/dev/null";
            path = if new_is_null { old } else { span.narrow(text, p) };
        }
    }
}

/// Calls `f` with every changed line of `diff`, in order.
pub fn for_each_changed_line<'a>(diff: &'a str, mut f: impl FnMut(Key<'a>)) {
    let mut src = TextSource::new(diff);
    parse(&mut src, |_, path, line| {
        let r = |s: Span| match s.range() {
            (Buffer::Input, r) => &diff[r],
            (Buffer::Decoded, _) => "",
        };
        f((r(path), r(line)))
    });
}

/// Every changed line of `diff`, in order.
pub fn changed_lines(diff: &str) -> Vec<Key<'_>> {
    let mut out = Vec::new();
    for_each_changed_line(diff, |k| out.push(k));
    out
}

/// The path of a `---`/`+++` header: up to the first tab, one `a/` or `b/` removed.
fn header_path(rest: &[u8]) -> &[u8] {
    let p = match memchr::memchr(b'\t', rest) {
        Some(i) => &rest[..i],
        None => rest,
    };
    p.strip_prefix(b"a/").or_else(|| p.strip_prefix(b"b/")).unwrap_or(p)
}

/// The old and new line counts of a `@@ -a[,b] +c[,d] @@` header (anything may follow).
fn hunk_counts(line: &[u8]) -> Option<(u64, u64)> {
    let rest = line.strip_prefix(b"@@ -")?;
    let (_, rest) = number(rest)?;
    let (b, rest) = match rest.strip_prefix(b",") {
        Some(r) => number(r)?,
        None => (1, rest),
    };
    let rest = rest.strip_prefix(b" +")?;
    let (_, rest) = number(rest)?;
    let (d, rest) = match rest.strip_prefix(b",") {
        Some(r) => number(r)?,
        None => (1, rest),
    };
    rest.strip_prefix(b" @@")?;
    Some((b, d))
}

/// A run of ASCII digits (at least one); huge values saturate, which no real diff can reach.
fn number(s: &[u8]) -> Option<(u64, &[u8])> {
    let end = s.iter().position(|c| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let value = s[..end].iter().fold(0u64, |acc, c| acc.saturating_mul(10).saturating_add(u64::from(c - b'0')));
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
        // A `---` after the `+++ /dev/null` still decides (the rule reads the paths per line).
        let d = "+++ /dev/null\n--- a/late\n@@ -1 +0,0 @@\n-x\n";
        assert_eq!(keys(d), vec!["late\t-x"]);
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
        assert_eq!(keys("@@ -1 +1 @@\n-\r\r\n"), vec!["\t-\r"]);
    }

    #[test]
    fn truncated_hunk_recovers_at_next_header() {
        let d = "--- a/f\n+++ b/f\n@@ -1,9 +1,9 @@\n-a\ndiff --git a/g b/g\n--- a/g\n+++ b/g\n@@ -1 +1 @@\n-b\n+c\n";
        assert_eq!(keys(d), vec!["f\t-a", "g\t-b", "g\t+c"]);
    }
}
