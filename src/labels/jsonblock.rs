//! The bytes of a JSON string literal classified 64 at a time, as bit masks.
//!
//! Contract: [`Block::load`] reads the 64 bytes `b[at..at + 64]` (bytes past the end of `b` read
//! as NUL, a control character) and gives one bit per byte (bit `k` is `b[at + k]`):
//! - [`Block::ends`]: the `n` of a `\n` escape (a diff line ends at the backslash before it),
//! - [`Block::quote`]: a quote that is not escaped (the end of the literal),
//! - [`Block::hard`]: what the fast line splitter leaves to the byte-at-a-time scanner: control
//!   characters, non-ASCII bytes, and escaped characters other than `n " \ t r` (`\u`, `\/`,
//!   `\b`, `\f`, and invalid escapes),
//!
//! given `carry`: whether `b[at]` is escaped by a backslash before `at` (1) or not (0). A backslash
//! escapes the next byte unless it is itself escaped: in a run of backslashes every other one
//! escapes, starting with the first. [`Block::carry`] is the carry of the next block
//! (`b[at + 64]`). The escape masks use simdjson's carry-free arithmetic on the backslash mask;
//! the byte classes are compared 16 bytes at a time with SSE2 (the x86_64 baseline), or one byte
//! at a time elsewhere. Tests hold both to a byte-at-a-time reference.

/// The masks of 64 bytes of a literal (see the module contract).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Block {
    pub ends: u64,
    pub quote: u64,
    pub hard: u64,
    pub carry: u64,
}

/// Byte classes of 64 bytes, one bit per byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Classes {
    backslash: u64,
    quote: u64,
    n: u64,
    /// `n " \ t r`: the escaped characters the fast splitter handles.
    plain: u64,
    /// Control characters and non-ASCII bytes.
    special: u64,
}

impl Block {
    /// The masks of `b[at..at + 64]`, `carry` saying whether `b[at]` is escaped.
    #[inline(always)]
    pub fn load(b: &[u8], at: usize, carry: u64) -> Block {
        let c = match b.get(at..at + 64) {
            Some(s) => classify(s),
            None => {
                let mut pad = [0u8; 64];
                let rest = b.get(at..).unwrap_or_default();
                pad[..rest.len()].copy_from_slice(rest);
                classify(&pad)
            }
        };
        let (escaped, carry) = escaped_bits(c.backslash, carry);
        Block { ends: escaped & c.n, quote: c.quote & !escaped, hard: c.special | (escaped & !c.plain), carry }
    }
}

/// The escaped characters of a block given its backslashes and carry-in, and the carry-out
/// (simdjson's `json_escape_scanner`: the subtraction finds, in each run of backslashes,
/// which ones escape, and every run's first backslash escapes).
#[inline]
fn escaped_bits(backslash: u64, carry: u64) -> (u64, u64) {
    const ODD: u64 = 0xAAAA_AAAA_AAAA_AAAA;
    // A backslash that is escaped itself escapes nothing.
    let potential = backslash & !carry;
    let maybe_escaped = potential << 1;
    let codes = (maybe_escaped | ODD).wrapping_sub(potential) ^ ODD;
    let escaped = codes ^ (backslash | carry);
    let escape = codes & backslash;
    (escaped, escape >> 63)
}

/// The byte classes of `s` (64 bytes).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
#[allow(unsafe_code)]
fn classify(s: &[u8]) -> Classes {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    assert!(s.len() >= 64);
    let mut c = Classes::default();
    for lane in 0..4 {
        // SAFETY: the cfg guarantees SSE2, and `s[16 * lane..]` holds 16 readable bytes (asserted
        // above; the load has no alignment requirement).
        let m = unsafe {
            let v = _mm_loadu_si128(s.as_ptr().add(16 * lane).cast::<__m128i>());
            let eq = |x: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(x as i8));
            let (backslash, quote, n) = (eq(b'\\'), eq(b'"'), eq(b'n'));
            let plain = _mm_or_si128(_mm_or_si128(backslash, quote), _mm_or_si128(n, _mm_or_si128(eq(b't'), eq(b'r'))));
            // Signed compare: bytes >= 0x80 are negative, so this flags them and controls.
            let special = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
            let mask = |x: __m128i| u64::from(_mm_movemask_epi8(x) as u16);
            [mask(backslash), mask(quote), mask(n), mask(plain), mask(special)]
        };
        let shift = 16 * lane;
        c.backslash |= m[0] << shift;
        c.quote |= m[1] << shift;
        c.n |= m[2] << shift;
        c.plain |= m[3] << shift;
        c.special |= m[4] << shift;
    }
    c
}

/// The byte classes of `s` (64 bytes), one byte at a time.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn classify(s: &[u8]) -> Classes {
    classify_bytes(s)
}

#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn classify_bytes(s: &[u8]) -> Classes {
    let mut c = Classes::default();
    for (k, &x) in s[..64].iter().enumerate() {
        let bit = 1u64 << k;
        let on = |yes: bool| if yes { bit } else { 0 };
        c.backslash |= on(x == b'\\');
        c.quote |= on(x == b'"');
        c.n |= on(x == b'n');
        c.plain |= on(matches!(x, b'n' | b'"' | b'\\' | b't' | b'r'));
        c.special |= on(!(0x20..0x80).contains(&x));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte-at-a-time reading of the same masks over a whole text, from an unescaped start.
    fn reference(b: &[u8]) -> Vec<Block> {
        let mut out = Vec::new();
        let mut escaped_next = false;
        let mut at = 0;
        while at < b.len() {
            let mut blk = Block { carry: 0, ..Block::default() };
            for k in 0..64 {
                let x = b.get(at + k).copied().unwrap_or(0);
                let bit = 1u64 << k;
                let escaped = escaped_next;
                escaped_next = !escaped && x == b'\\';
                if escaped {
                    if x == b'n' {
                        blk.ends |= bit;
                    }
                    if !matches!(x, b'n' | b'"' | b'\\' | b't' | b'r') {
                        blk.hard |= bit;
                    }
                } else if x == b'"' {
                    blk.quote |= bit;
                }
                if !(0x20..0x80).contains(&x) {
                    blk.hard |= bit;
                }
            }
            blk.carry = u64::from(escaped_next);
            out.push(blk);
            at += 64;
        }
        out
    }

    fn blocks(b: &[u8]) -> Vec<Block> {
        let mut out = Vec::new();
        let mut carry = 0;
        let mut at = 0;
        while at < b.len() {
            let blk = Block::load(b, at, carry);
            carry = blk.carry;
            out.push(blk);
            at += 64;
        }
        out
    }

    #[test]
    fn masks_match_the_byte_at_a_time_reading() {
        let alphabet: &[u8] = b"\\\\\\\\\\\"ntrux/ \x01\x7f\xc3";
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for len in [1, 2, 63, 64, 65, 127, 128, 129, 200, 640] {
            for _ in 0..400 {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                assert_eq!(blocks(&text), reference(&text), "{}", String::from_utf8_lossy(&text));
            }
        }
        // Runs of backslashes across the block boundary.
        for run in 0..140 {
            let mut text = vec![b'a'; 60];
            text.extend(std::iter::repeat_n(b'\\', run));
            text.extend_from_slice(b"n\"rest");
            assert_eq!(blocks(&text), reference(&text), "run {run}");
        }
    }

    #[test]
    fn sse2_and_portable_classes_agree() {
        let text: Vec<u8> = (0u8..=255).chain(b"\\\"ntr".iter().copied()).collect();
        for at in 0..text.len() - 64 {
            assert_eq!(classify(&text[at..at + 64]), classify_bytes(&text[at..at + 64]), "at {at}");
        }
    }
}
