//! Diff lines read straight from the body of a JSON string literal.
//!
//! Contract: [`JsonStrSource`] yields exactly the lines of the decoded string split on `\n`
//! (a `\n` or `\u000a` escape; a JSON string holds no raw newline) with one trailing `\r`
//! (`\r` or `\u000d`) removed, like [`super::diffparse::TextSource`] does on the decoded text.
//! A line is only decoded when the parsing rule asks for its text; lines without escapes are
//! borrowed from the input. The input must be a JSON string body that a JSON parser accepted
//! (as `serde_json` does for a `RawValue`); anything else is still read without panicking. A
//! lone UTF-16 surrogate escape, which Rust strings cannot hold, decodes to U+FFFD.

use super::diffparse::{LineSource, Span};

/// Lines of a JSON string body (the text between the quotes, escapes intact).
pub struct JsonStrSource<'a> {
    raw: &'a str,
    pos: usize,
    done: bool,
    decoded: String,
}

/// A line: raw byte range, and whether it holds escapes that decoding must resolve.
#[derive(Debug, Clone, Copy)]
pub struct RawLine {
    start: u32,
    end: u32,
    escaped: bool,
}

impl<'a> JsonStrSource<'a> {
    /// `body` is the string literal without its quotes.
    pub fn new(body: &'a str) -> JsonStrSource<'a> {
        assert!(body.len() < u32::MAX as usize, "diff larger than 4 GiB");
        JsonStrSource { raw: body, pos: 0, done: false, decoded: String::new() }
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = b.get(..4)?;
    let mut v = 0u32;
    for &c in s {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// The escape at `b[i] == b'\\'`: (decoded code unit or byte, length in bytes).
fn escape_at(b: &[u8], i: usize) -> (u32, usize) {
    match b.get(i + 1) {
        Some(b'n') => (0x0a, 2),
        Some(b'r') => (0x0d, 2),
        Some(b't') => (0x09, 2),
        Some(b'b') => (0x08, 2),
        Some(b'f') => (0x0c, 2),
        Some(b'u') => match hex4(&b[i + 2..]) {
            Some(v) => (v, 6),
            None => (u32::from(b'u'), 2),
        },
        Some(&c) => (u32::from(c), 2),
        None => (u32::from(b'\\'), 1),
    }
}

impl LineSource for JsonStrSource<'_> {
    type Line = RawLine;

    fn next_line(&mut self) -> Option<RawLine> {
        if self.done {
            return None;
        }
        let b = self.raw.as_bytes();
        let start = self.pos;
        let mut i = start;
        let mut escapes = 0usize;
        // The last escape: (start, end, value).
        let mut last: Option<(usize, usize, u32)> = None;
        let end = loop {
            match memchr::memchr(b'\\', &b[i..]) {
                None => {
                    self.done = true;
                    break b.len();
                }
                Some(off) => {
                    let at = i + off;
                    let (value, len) = escape_at(b, at);
                    if value == 0x0a {
                        self.pos = at + len;
                        break at;
                    }
                    escapes += 1;
                    last = Some((at, at + len, value));
                    i = at + len;
                }
            }
        };
        let mut end = end;
        if let Some((at, e, 0x0d)) = last {
            if e == end {
                end = at;
                escapes -= 1;
            }
        }
        Some(RawLine { start: start as u32, end: end as u32, escaped: escapes > 0 })
    }

    fn first_byte(&self, l: RawLine) -> Option<u8> {
        let b = self.raw.as_bytes();
        let (s, e) = (l.start as usize, l.end as usize);
        if s >= e {
            return None;
        }
        if b[s] != b'\\' {
            return Some(b[s]);
        }
        let (v, _) = escape_at(b, s);
        // Only ASCII first bytes matter to the rule; any non-ASCII character maps to 0x80.
        Some(if v < 0x80 { v as u8 } else { 0x80 })
    }

    fn text(&mut self, l: RawLine) -> Span {
        if !l.escaped {
            return Span::Input(l.start, l.end);
        }
        let from = self.decoded.len();
        let raw = &self.raw[l.start as usize..l.end as usize];
        let b = raw.as_bytes();
        let mut i = 0;
        while let Some(off) = memchr::memchr(b'\\', &b[i..]) {
            let at = i + off;
            self.decoded.push_str(&raw[i..at]);
            let (v, len) = escape_at(b, at);
            let mut next = at + len;
            let ch = if (0xD800..0xDC00).contains(&v) && len == 6 {
                // A high surrogate: pair it with a following low one.
                match (b.get(next), b.get(next + 1), hex4(b.get(next + 2..).unwrap_or(&[]))) {
                    (Some(b'\\'), Some(b'u'), Some(lo)) if (0xDC00..0xE000).contains(&lo) => {
                        next += 6;
                        char::from_u32(0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00))
                    }
                    _ => None,
                }
            } else {
                char::from_u32(v)
            };
            self.decoded.push(ch.unwrap_or('\u{FFFD}'));
            i = next;
        }
        self.decoded.push_str(&raw[i..]);
        Span::Decoded(from as u32, self.decoded.len() as u32)
    }

    fn resolve(&self, span: Span) -> &str {
        match span {
            Span::Input(s, e) => self.raw.get(s as usize..e as usize).unwrap_or(""),
            Span::Decoded(s, e) => self.decoded.get(s as usize..e as usize).unwrap_or(""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::diffparse::{changed_lines, parse};
    use super::*;

    /// Keys read from the JSON encoding equal keys read from the decoded text.
    fn check(text: &str) {
        let want: Vec<String> = changed_lines(text).into_iter().map(|(p, l)| format!("{p}\t{l}")).collect();
        let ascii = ascii_json(text);
        for json in [serde_json::to_string(text).unwrap(), ascii] {
            let body = &json[1..json.len() - 1];
            let mut src = JsonStrSource::new(body);
            let mut got = Vec::new();
            parse(&mut src, |s, p, l| got.push(format!("{}\t{}", s.resolve(p), s.resolve(l))));
            assert_eq!(got, want, "{json}");
        }
    }

    /// JSON with every non-ASCII character and newline escaped as \uXXXX (like Python's default).
    fn ascii_json(text: &str) -> String {
        let mut out = String::from("\"");
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '/' => out.push_str("\\/"),
                c if (c as u32) < 0x20 || (c as u32) >= 0x7f => {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{:04X}", u));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn json_lines_match_text_lines() {
        check("");
        check("--- a/f\t\"q\"\n+++ b/f\n@@ -1,2 +1,2 @@\n-\"quoted\" \\ back\n+tab\there ünï 😀\r\n\\ No newline\n \n");
        check("--- a/x\r\n+++ /dev/null\r\n@@ -1 +0,0 @@\r\n-\r\r\n");
        check("@@ -1,3 +1 @@\n\t-not a hunk line\n-x\n");
        check("--- a/\u{1F600}/f\n+++ b/\u{1F600}/f\n@@ -1 +1 @@\n-\u{7f}\n+/\n");
        check("\\\n@@ -1 +1 @@\n\\n\n-\\r\n");
    }

    #[test]
    fn lone_surrogates_and_garbage_do_not_panic() {
        for body in ["\\ud800", "-\\ud800x", "\\", "\\u12", "@@ -1 +1 @@\\n-\\udc00\\n+\\ud83d\\ude00"] {
            let mut src = JsonStrSource::new(body);
            parse(&mut src, |s, p, l| {
                let _ = (s.resolve(p), s.resolve(l));
            });
        }
    }
}
