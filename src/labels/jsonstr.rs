//! JSON string literals read in one pass: validated, split into diff lines, decoded lazily.
//!
//! Contract: [`JsonStrSource`] reads the string literal that starts at a given byte of a JSON
//! text and yields exactly the lines of its decoded value split on `\n` (a `\n` or `\u000a`
//! escape; a JSON string holds no raw newline), with one trailing `\r` (`\r` or `\u000d`)
//! removed, like [`super::diffparse::TextSource`] does on the decoded text. While it splits, it
//! validates the literal as JSON does (no raw control characters, only the JSON escapes,
//! well-formed UTF-8) and finds the closing quote, so the string is scanned once; a malformed
//! literal ends the lines early and [`JsonStrSource::finish`] reports it. A lone UTF-16
//! surrogate escape is accepted (as JSON parsers do for raw values) and decodes to U+FFFD.
//!
//! Two readings of a line: [`LineSource::text`] is the decoded text (headers, paths), and
//! [`LineSource::key`] is the line in one canonical JSON escaping (`\"`, `\\`, `\t`, `\r`, `\b`,
//! `\f`, `\u00XX` for other control characters, everything else raw UTF-8). Decoded text maps
//! one-to-one to its canonical escaping, so equal keys are equal lines whatever escaping the
//! producer chose, and the usual lines (no `\u` or `\/` escapes) are borrowed from the input
//! without decoding.
//!
//! Lines are found 64 bytes at a time from the masks of [`super::jsonblock`], ahead of the
//! lines: a scan takes every line end of a block out of its mask at once into a small buffer of
//! stops, block after block, so that reading the next line takes no branch on where it ends (a
//! line ending in this block or the next one was the splitter's most mispredicted branch;
//! [`super::jsonblock::Stops`]). A line holding
//! anything but ASCII from 0x20 up and the escapes `\n \" \\ \t \r` (a `\u` or `\/` escape, `\b`,
//! `\f`, a control character, a non-ASCII byte, a flaw) is read again from its start by the
//! byte-at-a-time scanner, which handles every case; a test holds the two to the same lines.
//! [`skip_string`] validates a literal that is not a diff; [`next_special`] is the byte-at-a-time
//! scanner's search (16 bytes per step with SSE2, else eight in a `u64`).

use super::diffparse::{Buffer, LineSource, Span};
use super::jsonblock::Stops;

/// The index of the first byte at or after `i` that a string scanner must look at: `"`, `\`,
/// a control character (< 0x20) or a non-ASCII byte; `b.len()` when there is none.
#[inline]
#[allow(unsafe_code)]
pub fn next_special(b: &[u8], mut i: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        // 16 bytes per step with SSE2 (part of the x86_64 baseline).
        while let Some(block) = b.get(i..i + 16) {
            // SAFETY: the cfg guarantees SSE2, and `block` is 16 readable bytes (the load has no
            // alignment requirement).
            let m = unsafe {
                let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                // Signed compare: bytes >= 0x80 are negative, so this flags them and controls.
                let low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), low)) as u32
            };
            if m != 0 {
                return i + m.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    next_special_swar(b, i)
}

/// [`next_special`], eight bytes at a time in a `u64` (any target; the tail on x86_64).
#[inline]
fn next_special_swar(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        // A byte's high bit is set for: < 0x20 (the subtraction borrows) or >= 0x80 (x), a
        // quote or a backslash (a zero byte after the xor). Borrows only start at a flagged
        // byte, so the lowest flag is exact.
        let q = x ^ (LO * u64::from(b'"'));
        let s = x ^ (LO * u64::from(b'\\'));
        let m = ((x.wrapping_sub(LO * 0x20) | x) | (q.wrapping_sub(LO) & !q) | (s.wrapping_sub(LO) & !s)) & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !is_special(b[i]) {
        i += 1;
    }
    i
}

#[inline]
fn is_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c)
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = b.get(..4)?;
    let mut v = 0u32;
    for &c in s {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// The escape at `b[i] == b'\\'`: (code unit, length in bytes), or `None` if JSON forbids it.
#[inline(always)]
fn escape_at(b: &[u8], i: usize) -> Option<(u32, usize)> {
    Some(match b.get(i + 1)? {
        b'n' => (0x0a, 2),
        b'r' => (0x0d, 2),
        b't' => (0x09, 2),
        b'"' => (0x22, 2),
        b'\\' => (0x5c, 2),
        b'/' => (0x2f, 2),
        b'b' => (0x08, 2),
        b'f' => (0x0c, 2),
        b'u' => (hex4(b.get(i + 2..)?)?, 6),
        _ => return None,
    })
}

/// The length of the well-formed UTF-8 character at `b[i]` (a non-ASCII lead byte).
fn utf8_char_len(b: &[u8], i: usize) -> Option<usize> {
    let len = match b[i] {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    std::str::from_utf8(b.get(i..i + len)?).ok().map(|_| len)
}

/// What a scan step found at a special byte.
#[derive(Clone, Copy)]
enum Step {
    /// The closing quote at this index.
    Quote(usize),
    /// An escape: start index, code unit, length.
    Escape(usize, u32, usize),
    /// A malformed literal: what is wrong, and where.
    Bad(Flaw, usize),
}

#[derive(Clone, Copy)]
enum Flaw {
    Unterminated,
    Escape,
    Control,
    Utf8,
}

impl Flaw {
    fn message(self, at: usize) -> String {
        match self {
            Flaw::Unterminated => "unterminated string".into(),
            Flaw::Escape => format!("invalid escape at column {}", at + 1),
            Flaw::Control => format!("control character in a string at column {}", at + 1),
            Flaw::Utf8 => format!("invalid UTF-8 at column {}", at + 1),
        }
    }
}

/// Scans from `i` past ordinary bytes and well-formed non-ASCII characters to the next quote or
/// escape, or to the first flaw of the literal.
#[inline(always)]
fn step(b: &[u8], mut i: usize) -> Step {
    loop {
        i = next_special(b, i);
        match b.get(i) {
            None => return Step::Bad(Flaw::Unterminated, i),
            Some(b'"') => return Step::Quote(i),
            Some(b'\\') => {
                // Most escapes in a diff end a line: test for that before the general decoder.
                if b.get(i + 1) == Some(&b'n') {
                    return Step::Escape(i, 0x0a, 2);
                }
                return match escape_at(b, i) {
                    Some((v, len)) => Step::Escape(i, v, len),
                    None => Step::Bad(Flaw::Escape, i),
                };
            }
            Some(&c) if c < 0x20 => return Step::Bad(Flaw::Control, i),
            Some(_) => match utf8_char_len(b, i) {
                Some(len) => i += len,
                None => return Step::Bad(Flaw::Utf8, i),
            },
        }
    }
}

/// Validates the string literal whose opening quote is at `b[at - 1]`; returns the index just
/// past its closing quote, and whether it holds escapes.
pub fn skip_string(b: &[u8], at: usize) -> Result<(usize, bool), String> {
    let mut i = at;
    let mut escaped = false;
    loop {
        match step(b, i) {
            Step::Quote(q) => return Ok((q + 1, escaped)),
            Step::Escape(e, _, len) => {
                escaped = true;
                i = e + len;
            }
            Step::Bad(flaw, at) => return Err(flaw.message(at)),
        }
    }
}

/// Lines of one JSON string literal (see the module contract).
pub struct JsonStrSource<'a, 'd> {
    /// The whole JSON text; spans index into it.
    b: &'a [u8],
    /// Next unread byte of the literal.
    pos: usize,
    /// Index just past the closing quote, once reached.
    end: Option<usize>,
    error: Option<String>,
    /// Decoded and canonicalized lines (shared by the sources of one record).
    decoded: &'d mut Vec<u8>,
    /// Line ends found ahead of the lines.
    stops: Stops,
}

/// A line: raw byte range, and whether it holds an escape that is not in the canonical form
/// (`\u`, `\/`), in the top bit of `end` (texts hold fewer than 2^31 bytes). Eight bytes, so
/// it travels in a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLine {
    start: u32,
    end: u32,
}

impl RawLine {
    const UNCANONICAL: u32 = 1 << 31;

    fn new(start: usize, end: usize, uncanonical: bool) -> RawLine {
        let flag = if uncanonical { RawLine::UNCANONICAL } else { 0 };
        RawLine { start: start as u32, end: end as u32 | flag }
    }

    fn range(self) -> (usize, usize) {
        (self.start as usize, (self.end & !RawLine::UNCANONICAL) as usize)
    }

    fn uncanonical(self) -> bool {
        self.end & RawLine::UNCANONICAL != 0
    }
}

impl<'a, 'd> JsonStrSource<'a, 'd> {
    /// The literal whose opening quote is at `b[at - 1]`; decoded text is appended to `decoded`.
    pub fn new(b: &'a [u8], at: usize, decoded: &'d mut Vec<u8>) -> JsonStrSource<'a, 'd> {
        assert!(b.len() < Span::LIMIT, "JSON text larger than 2 GiB");
        JsonStrSource { b, pos: at, end: None, error: None, decoded, stops: Stops::default() }
    }

    /// After every line was read: the index just past the closing quote, or why the literal is
    /// malformed.
    pub fn finish(self) -> Result<usize, String> {
        match (self.error, self.end) {
            (Some(e), _) => Err(e),
            (None, Some(end)) => Ok(end),
            (None, None) => Err("string not read to its end".into()),
        }
    }

    /// The next line by 64-byte masks ([`super::jsonblock`]), or `None` (nothing consumed) when
    /// the line holds something only [`Self::scalar_line`] reads.
    #[inline]
    fn fast_line(&mut self) -> Option<RawLine> {
        let start = self.pos;
        let at = self.stops.peek(self.b, start);
        let b = self.b;
        let mut end = match b.get(at) {
            Some(b'n') => {
                self.pos = at + 1;
                at - 1
            }
            Some(b'"') => {
                self.end = Some(at + 1);
                at
            }
            _ => {
                // Left to the byte-at-a-time scanner; scanning starts again after its line.
                self.stops.restart();
                return None;
            }
        };
        self.stops.advance();
        // One trailing `\r` escape comes off (`\u000d` takes the other path).
        if end >= start + 2 && b[end - 2..end] == *b"\\r" {
            let run = b[start..end - 1].iter().rev().take_while(|&&c| c == b'\\').count();
            if run % 2 == 1 {
                end -= 2;
            }
        }
        Some(RawLine::new(start, end, false))
    }

    /// The next line, a byte at a time (any literal: escapes of every kind, non-ASCII text,
    /// flaws); `None` at a flaw.
    fn scalar_line(&mut self) -> Option<RawLine> {
        let b = self.b;
        let start = self.pos;
        let mut i = start;
        let mut uncanonical = 0u32;
        // The last escape: (start, end, code unit).
        let mut last = (0, 0, 0);
        let end = loop {
            match step(b, i) {
                Step::Bad(flaw, at) => {
                    self.error = Some(flaw.message(at));
                    return None;
                }
                Step::Quote(q) => {
                    self.end = Some(q + 1);
                    break q;
                }
                Step::Escape(at, v, len) => {
                    if v == 0x0a {
                        self.pos = at + len;
                        break at;
                    }
                    if matches!(b[at + 1], b'u' | b'/') {
                        uncanonical += 1;
                    }
                    last = (at, at + len, v);
                    i = at + len;
                }
            }
        };
        let mut end = end;
        if last.2 == 0x0d && last.1 == end {
            end = last.0;
            if b[last.0 + 1] == b'u' {
                uncanonical -= 1;
            }
        }
        Some(RawLine::new(start, end, uncanonical > 0))
    }

    /// Appends the decoded text of `b[s..e]` (`canonical`: re-escaped canonically).
    fn decode(&mut self, s: usize, e: usize, canonical: bool) -> Span {
        let from = self.decoded.len();
        let b = &self.b[..e];
        let mut i = s;
        while let Some(off) = memchr::memchr(b'\\', &b[i..]) {
            let at = i + off;
            self.decoded.extend_from_slice(&b[i..at]);
            let (v, len) = escape_at(b, at).unwrap_or((0xFFFD, 2));
            let mut next = at + len;
            let ch = if (0xD800..0xDC00).contains(&v) {
                // A high surrogate: pair it with a following low one.
                match (b.get(next), b.get(next + 1), b.get(next + 2..).and_then(hex4)) {
                    (Some(b'\\'), Some(b'u'), Some(lo)) if (0xDC00..0xE000).contains(&lo) => {
                        next += 6;
                        char::from_u32(0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00))
                    }
                    _ => None,
                }
            } else {
                char::from_u32(v)
            };
            let ch = ch.unwrap_or('\u{FFFD}');
            if canonical {
                push_canonical(self.decoded, ch);
            } else {
                let mut buf = [0u8; 4];
                self.decoded.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            i = next;
        }
        self.decoded.extend_from_slice(&b[i..]);
        Span::decoded(from as u32, self.decoded.len() as u32)
    }
}

/// Appends `ch` in the canonical JSON escaping of the module contract.
fn push_canonical(out: &mut Vec<u8>, ch: char) {
    match ch {
        '"' => out.extend_from_slice(b"\\\""),
        '\\' => out.extend_from_slice(b"\\\\"),
        '\t' => out.extend_from_slice(b"\\t"),
        '\r' => out.extend_from_slice(b"\\r"),
        '\n' => out.extend_from_slice(b"\\n"),
        '\u{8}' => out.extend_from_slice(b"\\b"),
        '\u{c}' => out.extend_from_slice(b"\\f"),
        c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
        c => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

impl LineSource for JsonStrSource<'_, '_> {
    type Line = RawLine;

    #[inline]
    fn next_line(&mut self) -> Option<RawLine> {
        if self.end.is_some() || self.error.is_some() {
            return None;
        }
        self.fast_line().or_else(|| self.scalar_line())
    }

    #[inline]
    fn first_byte(&self, l: RawLine) -> Option<u8> {
        let (s, e) = l.range();
        if s >= e {
            return None;
        }
        let c = self.b[s];
        if c != b'\\' {
            return Some(c);
        }
        // Only ASCII first bytes matter to the rule; any non-ASCII character maps to 0x80.
        let v = escape_at(self.b, s).map_or(0x80, |(v, _)| v);
        Some(if v < 0x80 { v as u8 } else { 0x80 })
    }

    fn text(&mut self, l: RawLine) -> Span {
        // Header lines only: whether the line holds an escape is looked up here, not counted
        // for every line.
        let (s, e) = l.range();
        if memchr::memchr(b'\\', &self.b[s..e]).is_none() {
            return Span::input(s as u32, e as u32);
        }
        self.decode(s, e, false)
    }

    #[inline]
    fn key(&mut self, l: RawLine) -> Span {
        let (s, e) = l.range();
        if !l.uncanonical() {
            return Span::input(s as u32, e as u32);
        }
        self.decode(s, e, true)
    }

    #[inline]
    fn resolve(&self, span: Span) -> &[u8] {
        match span.range() {
            (Buffer::Input, r) => self.b.get(r).unwrap_or(b""),
            (Buffer::Decoded, r) => self.decoded.get(r).unwrap_or(b""),
        }
    }

    #[inline]
    fn tail(&self, span: Span) -> &[u8] {
        match span.range() {
            (Buffer::Input, r) => self.b.get(r.start..).unwrap_or(b""),
            (Buffer::Decoded, r) => self.decoded.get(r.start..).unwrap_or(b""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::diffparse::{changed_lines, parse};
    use super::*;

    /// Lines read from `json` (a literal with its quotes): (path text, key), and the end.
    fn read(json: &str) -> (Vec<(String, String)>, Result<usize, String>) {
        let mut decoded = Vec::new();
        let mut src = JsonStrSource::new(json.as_bytes(), 1, &mut decoded);
        let mut spans = Vec::new();
        parse(&mut src, |_, p, l| spans.push((p, l)));
        let resolved = spans
            .iter()
            .map(|&(p, l)| {
                let s = |x| String::from_utf8(src.resolve(x).to_vec()).unwrap();
                (s(p), s(l))
            })
            .collect();
        (resolved, src.finish())
    }

    /// Keys read from the JSON encoding equal the canonical escaping of keys read from the text.
    fn check(text: &str) {
        let want: Vec<(String, String)> = changed_lines(text)
            .into_iter()
            .map(|(p, l)| {
                let mut key = Vec::new();
                l.chars().for_each(|c| push_canonical(&mut key, c));
                (p.to_string(), String::from_utf8(key).unwrap())
            })
            .collect();
        for json in [serde_json::to_string(text).unwrap(), ascii_json(text)] {
            let (got, end) = read(&json);
            assert_eq!(got, want, "{json}");
            assert_eq!(end, Ok(json.len()));
        }
    }

    /// JSON with every non-ASCII character, `/` and control character as \uXXXX (or `\/`).
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
        check("--- a/\u{1F600}/f\n+++ b/\u{1F600}/f\n@@ -1 +1 @@\n-\u{7f}\u{1}\u{8}\u{c}\n+/\n");
        check("\\\n@@ -1 +1 @@\n\\n\n-\\r\n");
    }

    #[test]
    fn scanner_finds_every_special_byte() {
        let mut text: Vec<u8> = (0u8..=255).collect();
        text.extend_from_slice(b"plain ascii text only");
        for start in 0..text.len() {
            let want = (start..text.len()).find(|&i| is_special(text[i])).unwrap_or(text.len());
            assert_eq!(next_special(&text, start), want, "from {start}");
            assert_eq!(next_special_swar(&text, start), want, "from {start}");
        }
    }

    #[test]
    fn malformed_literals_are_reported() {
        for bad in ["\"abc", "\"a\\x\"", "\"a\u{1}b\"", "\"\\u12\"", "\"tab\there\""] {
            let (_, end) = read(bad);
            assert!(end.is_err(), "{bad:?}");
            assert!(skip_string(bad.as_bytes(), 1).is_err(), "{bad:?}");
        }
        let bad_utf8 = b"\"ab\xff\"";
        assert!(skip_string(bad_utf8, 1).is_err());
        assert_eq!(skip_string(b"\"a\\\"b\" tail", 1), Ok((6, true)));
    }

    #[test]
    fn mask_and_byte_at_a_time_lines_agree() {
        let pieces = [
            "a",
            "bc",
            "\\n",
            "\\r",
            "\\t",
            "\\\"",
            "\\\\",
            "\\u00e9",
            "\\u000a",
            "\\u000D",
            "\\/",
            "é",
            "-",
            "+",
            " ",
            "\\r\\n",
            "x\\\\r",
            "\\\\\\n",
            "\\b",
            "0123456789abcdefghijklmnopqrstuvwxyz",
        ];
        let flaws = ["\u{1}", "\\x", "\\u12", "\u{7f}\u{ff}"];
        let mut rnd = super::super::test_rng();
        for round in 0..4000 {
            let mut body = String::new();
            for _ in 0..rnd(200) {
                body.push_str(pieces[rnd(pieces.len())]);
            }
            if round % 5 == 0 {
                body.push_str(flaws[rnd(flaws.len())]);
                body.push_str(pieces[rnd(pieces.len())]);
            }
            let close = if round % 7 == 0 { "" } else { "\",\"x\":1}" };
            let json = format!("{{\"c\":\"{body}{close}").into_bytes();
            let (mut d1, mut d2) = (Vec::new(), Vec::new());
            let mut fast = JsonStrSource::new(&json, 6, &mut d1);
            let mut slow = JsonStrSource::new(&json, 6, &mut d2);
            let mut a = Vec::new();
            while let Some(l) = fast.next_line() {
                a.push(l);
            }
            let mut b = Vec::new();
            while slow.end.is_none() && slow.error.is_none() {
                match slow.scalar_line() {
                    Some(l) => b.push(l),
                    None => break,
                }
            }
            assert_eq!(a, b, "{}", String::from_utf8_lossy(&json));
            assert_eq!(fast.finish(), slow.finish(), "{}", String::from_utf8_lossy(&json));
        }
    }

    #[test]
    fn lone_surrogates_do_not_panic() {
        for body in
            ["\"\\ud800\"", "\"-\\ud800x\"", "\"@@ -1 +1 @@\\n-\\udc00\\n+\\ud83d\\ude00\"", "\"\\ud800\\u0041\""]
        {
            let (_, end) = read(body);
            assert_eq!(end, Ok(body.len()));
        }
    }
}
