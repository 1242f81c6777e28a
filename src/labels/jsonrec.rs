//! One-pass reader of a `{"id", "candidate", "final"}` JSON line.
//!
//! Contract: [`read_record`] accepts exactly the lines that are one JSON object (RFC 8259,
//! surrounding whitespace allowed, nesting at most [`MAX_DEPTH`] deep) with an `id` that is a
//! string or a number, string values for `candidate` and `final`, each of the three keys once,
//! and any other keys with any values. It returns the raw JSON text of the id (echoed verbatim)
//! and hands each diff literal to a callback as soon as it reaches it, so the callback can
//! validate and split the diff in the same pass (see [`super::jsonstr`]). Anything else is an
//! error message naming the column; nothing panics.

use super::jsonstr::skip_string;

/// Deepest nesting of arrays and objects accepted in values of other keys.
pub const MAX_DEPTH: usize = 128;

/// Which diff of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Candidate = 0,
    Final = 1,
}

/// Reads `line`; `diff(side, at)` must read the string literal whose opening quote is at
/// `line[at - 1]` and return the index just past its closing quote. Returns the id's byte range.
pub fn read_record(
    line: &[u8],
    mut diff: impl FnMut(Side, usize) -> Result<usize, String>,
) -> Result<std::ops::Range<usize>, String> {
    let mut p = Parser { b: line, i: 0 };
    p.ws();
    p.expect(b'{')?;
    p.ws();
    let mut id = None;
    let mut seen = [false; 2];
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let key = p.key()?;
            p.ws();
            p.expect(b':')?;
            p.ws();
            match key {
                Key::Id => {
                    if id.is_some() {
                        return Err("duplicate field `id`".into());
                    }
                    let start = p.i;
                    match p.peek() {
                        Some(b'"') => p.i = skip_string(line, p.i + 1)?.0,
                        Some(b'-' | b'0'..=b'9') => p.number()?,
                        _ => return Err(format!("\"id\" must be a string or a number (column {})", p.i + 1)),
                    }
                    id = Some(start..p.i);
                }
                Key::Diff(side) => {
                    if std::mem::replace(&mut seen[side as usize], true) {
                        return Err(format!("duplicate field `{}`", side.name()));
                    }
                    if p.peek() != Some(b'"') {
                        return Err(format!("\"candidate\" and \"final\" must be strings (column {})", p.i + 1));
                    }
                    p.i = diff(side, p.i + 1)?;
                }
                Key::Other => p.value(0)?,
            }
            if !p.separator(b'}', "`,` or `}`")? {
                break;
            }
        }
    }
    p.ws();
    if p.i != line.len() {
        return Err(format!("trailing characters at column {}", p.i + 1));
    }
    let Some(id) = id else { return Err("missing field `id`".into()) };
    for side in [Side::Candidate, Side::Final] {
        if !seen[side as usize] {
            return Err(format!("missing field `{}`", side.name()));
        }
    }
    Ok(id)
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Candidate => "candidate",
            Side::Final => "final",
        }
    }
}

enum Key {
    Id,
    Diff(Side),
    Other,
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// After a value: `,` (true: more follow) or `close` (false), or an error naming `want`.
    fn separator(&mut self, close: u8, want: &str) -> Result<bool, String> {
        self.ws();
        match self.next() {
            Some(b',') => Ok(true),
            Some(c) if c == close => Ok(false),
            Some(_) => Err(format!("expected {want} at column {}", self.i)),
            None => Err(format!("unexpected end of line, expected {want}")),
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at column {}", c as char, self.i + 1))
        }
    }

    /// An object key (the quote is next).
    fn key(&mut self) -> Result<Key, String> {
        if self.peek() != Some(b'"') {
            return Err(format!("expected a key at column {}", self.i + 1));
        }
        let start = self.i;
        let (end, escaped) = skip_string(self.b, start + 1)?;
        self.i = end;
        let raw = &self.b[start + 1..end - 1];
        let decoded;
        let name: &[u8] = if escaped {
            // Rare: a key spelled with escapes; a lone surrogate makes it some other key.
            decoded = serde_json::from_slice::<String>(&self.b[start..end]).unwrap_or_default();
            decoded.as_bytes()
        } else {
            raw
        };
        Ok(match name {
            b"id" => Key::Id,
            b"candidate" => Key::Diff(Side::Candidate),
            b"final" => Key::Diff(Side::Final),
            _ => Key::Other,
        })
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(format!("invalid number at column {}", start + 1)),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(format!("invalid number at column {}", start + 1));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(format!("invalid number at column {}", start + 1));
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    /// Any JSON value, validated and skipped.
    fn value(&mut self, depth: usize) -> Result<(), String> {
        match self.peek() {
            Some(b'"') => self.i = skip_string(self.b, self.i + 1)?.0,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(c @ (b'{' | b'[')) => {
                if depth >= MAX_DEPTH {
                    return Err(format!("nested too deeply at column {}", self.i + 1));
                }
                self.i += 1;
                let close = if c == b'{' { b'}' } else { b']' };
                self.ws();
                if self.peek() == Some(close) {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if c == b'{' {
                        self.key()?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                    }
                    self.value(depth + 1)?;
                    if !self.separator(close, if c == b'{' { "`,` or `}`" } else { "`,` or `]`" })? {
                        break;
                    }
                }
            }
            _ => {
                let rest = &self.b[self.i..];
                let lit = [&b"true"[..], b"false", b"null"].into_iter().find(|l| rest.starts_with(l));
                match lit {
                    Some(l) => self.i += l.len(),
                    None => return Err(format!("expected a value at column {}", self.i + 1)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::value::RawValue;

    /// The reading of the serde_json-based reader this one replaced: the oracle.
    fn oracle(line: &[u8]) -> bool {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct PairIn<'a> {
            #[serde(borrow)]
            id: &'a RawValue,
            #[serde(borrow)]
            candidate: &'a RawValue,
            #[serde(borrow, rename = "final")]
            final_diff: &'a RawValue,
        }
        let Ok(text) = std::str::from_utf8(line) else { return false };
        match serde_json::from_str::<PairIn>(text) {
            Ok(p) => {
                let id = p.id.get().as_bytes()[0];
                (id == b'"' || id == b'-' || id.is_ascii_digit())
                    && p.candidate.get().starts_with('"')
                    && p.final_diff.get().starts_with('"')
            }
            Err(_) => false,
        }
    }

    /// Each diff literal read: (side, first byte of the body, end).
    type Diffs = Vec<(Side, usize, usize)>;

    fn ours(line: &[u8]) -> Result<(String, Diffs), String> {
        let mut diffs = Vec::new();
        let id = read_record(line, |side, at| {
            let (end, _) = skip_string(line, at)?;
            diffs.push((side, at, end));
            Ok(end)
        })?;
        Ok((String::from_utf8(line[id].to_vec()).unwrap(), diffs))
    }

    #[test]
    fn reads_ids_and_diffs() {
        let line = br#" {"x": [1, {"y": null}], "final": "b\"", "id": -1.5e3, "candidate": "a"} "#;
        let (id, diffs) = ours(line).unwrap();
        assert_eq!(id, "-1.5e3");
        assert_eq!(diffs.iter().map(|d| d.0).collect::<Vec<_>>(), vec![Side::Final, Side::Candidate]);
        let (id, _) = ours(br#"{"i\u0064":"p\u00e9","candidate":"","final":""}"#).unwrap();
        assert_eq!(id, r#""p\u00e9""#);
    }

    #[test]
    fn agrees_with_serde_json_on_valid_and_broken_lines() {
        let seeds: [&[u8]; 6] = [
            br#"{"id":"a","candidate":"--- a/f\n+++ b/f\n@@ -1 +1 @@\n-x\n+y\n","final":""}"#,
            br#"{"id": 12, "candidate": "\u00e9\ud83d\ude00\t\"", "final": "x", "extra": {"k": [true, false, null, -0.5E+2, "s"]}}"#,
            br#"{"final":"","id":0,"candidate":""}"#,
            "{\"id\":\"é\",\"candidate\":\"ü😀\",\"final\":\"\\/\"}\r\n".as_bytes(),
            br#"{"id":"a","candidate":"","final":"","id":"b"}"#,
            br#"{"id":[1],"candidate":"","final":""}"#,
        ];
        let alphabet: &[u8] = b"{}[]\":,\\ntu0123456789-+.eE \t\x01\x7f\xc3\xa9\xff";
        let mut rnd = super::super::test_rng();
        let mut checked = 0;
        for seed in seeds {
            assert_eq!(ours(seed).is_ok(), oracle(seed), "{}", String::from_utf8_lossy(seed));
            for _ in 0..3000 {
                let mut line = seed.to_vec();
                for _ in 0..1 + rnd(3) {
                    let at = rnd(line.len() + 1);
                    match rnd(3) {
                        0 if at < line.len() => {
                            line.remove(at);
                        }
                        1 => line.insert(at, alphabet[rnd(alphabet.len())]),
                        _ if at < line.len() => line[at] = alphabet[rnd(alphabet.len())],
                        _ => {}
                    }
                }
                assert_eq!(ours(&line).is_ok(), oracle(&line), "{}", String::from_utf8_lossy(&line));
                checked += 1;
            }
        }
        assert_eq!(checked, 18_000);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "{{\"id\":1,\"candidate\":\"\",\"final\":\"\",\"x\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(ours(deep.as_bytes()).is_err());
    }
}
