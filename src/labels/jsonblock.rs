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
//! the byte classes are compared 16 bytes at a time with SSE2 (the x86_64 baseline), 32 at a
//! time with AVX2 ([`Block::load_avx2`], for a caller that checked the processor has it), or one
//! byte at a time elsewhere. Tests hold all three to a byte-at-a-time reference.
//!
//! [`Stops`] finds, block after block, the stops of a literal ahead of its lines: the `n` of
//! every `\n` escape in order, then the closing quote or the first [`Block::hard`] byte (where
//! the scan stops until [`Stops::restart`]). It runs compiled for AVX2, BMI1 and POPCNT when the
//! processor has them (32-byte compares, one instruction per bit count; x86-64's baseline has
//! neither).

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
        Block::load_with(b, at, carry, classify)
    }

    /// [`Block::load`] with AVX2 compares (32 bytes at a time).
    ///
    /// # Safety
    /// The processor must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    #[allow(unsafe_code)]
    pub unsafe fn load_avx2(b: &[u8], at: usize, carry: u64) -> Block {
        // SAFETY: the caller guarantees AVX2.
        Block::load_with(b, at, carry, |s| unsafe { classify_avx2(s) })
    }

    #[inline(always)]
    fn load_with(b: &[u8], at: usize, carry: u64, classify: impl Fn(&[u8]) -> Classes) -> Block {
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

/// Room for stops: a scan goes on while another block's worth (at most 32 line ends, and a last
/// stop) fits, with the four the scan always writes.
const STOPS: usize = 128;

/// Stops of a literal found ahead of its lines (see the module contract).
pub struct Stops {
    /// The next block to scan: the masks of `b[base..base + 64]`; `base` is `usize::MAX` when
    /// the scan starts again at the position [`Stops::peek`] is given.
    base: usize,
    blk: Block,
    /// `stops[next..count]` are found and not read yet.
    stops: [u32; STOPS],
    next: usize,
    count: usize,
}

impl Default for Stops {
    fn default() -> Stops {
        Stops { base: usize::MAX, blk: Block::default(), stops: [0; STOPS], next: 0, count: 0 }
    }
}

impl Stops {
    /// The next stop of the literal in `b`; `pos` (not inside an escape) is where the scan
    /// starts when it starts again (at first, and after [`Stops::restart`]).
    #[inline(always)]
    pub fn peek(&mut self, b: &[u8], pos: usize) -> usize {
        if self.next == self.count {
            self.scan(b, pos);
        }
        self.stops[self.next] as usize
    }

    /// Past the stop [`Stops::peek`] gave.
    #[inline(always)]
    pub fn advance(&mut self) {
        self.next += 1;
    }

    /// Forgets the stops found: the next [`Stops::peek`] scans from its `pos`.
    #[inline(always)]
    pub fn restart(&mut self) {
        self.next = 0;
        self.count = 0;
        self.base = usize::MAX;
    }

    /// Finds the next stops, a block at a time, until the last stop (the closing quote or a
    /// byte for the scalar scanner) or until the room is nearly used. The line ends of a block
    /// are taken out of its mask: four without a branch on how many there are (a block of
    /// code holds one or two), a loop for the rest.
    #[inline]
    #[allow(unsafe_code)]
    fn scan(&mut self, b: &[u8], pos: usize) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("popcnt")
        {
            // SAFETY: the processor has the features the function is compiled for.
            return unsafe { self.scan_avx2(b, pos) };
        }
        self.scan_with::<false>(b, pos)
    }

    /// [`Self::scan`] compiled for AVX2, BMI1 and POPCNT: 32-byte compares, and one instruction
    /// each for the bit counts and the lowest set bit (x86-64's baseline has none of them).
    ///
    /// # Safety
    /// The processor must have AVX2, BMI1 and POPCNT.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi1,popcnt")]
    #[allow(unsafe_code)]
    unsafe fn scan_avx2(&mut self, b: &[u8], pos: usize) {
        self.scan_with::<true>(b, pos)
    }

    /// The block at `at` ([`Block::load`], or its AVX2 twin).
    #[inline(always)]
    #[allow(unsafe_code)]
    fn load<const AVX2: bool>(b: &[u8], at: usize, carry: u64) -> Block {
        #[cfg(target_arch = "x86_64")]
        if AVX2 {
            // SAFETY: `AVX2` is only set by `scan_avx2`, which runs with AVX2.
            return unsafe { Block::load_avx2(b, at, carry) };
        }
        Block::load(b, at, carry)
    }

    /// [`Self::scan`], the blocks read by [`Self::load`].
    #[inline(always)]
    fn scan_with<const AVX2: bool>(&mut self, b: &[u8], pos: usize) {
        if self.base == usize::MAX {
            // A line never starts inside an escape.
            self.base = pos;
            self.blk = Self::load::<AVX2>(b, pos, 0);
        }
        let (mut count, stops) = (0, &mut self.stops);
        loop {
            let blk = self.blk;
            let last = blk.quote | blk.hard;
            // The bits below the last stop (all of them when there is none).
            let before = (last & last.wrapping_neg()).wrapping_sub(1);
            let mut ends = blk.ends & before;
            let n = ends.count_ones() as usize;
            for s in &mut stops[count..count + 4] {
                *s = (self.base + ends.trailing_zeros() as usize) as u32;
                ends &= ends.wrapping_sub(1);
            }
            for s in stops[count..count + n].iter_mut().skip(4) {
                *s = (self.base + ends.trailing_zeros() as usize) as u32;
                ends &= ends.wrapping_sub(1);
            }
            count += n;
            if last != 0 {
                stops[count] = (self.base + last.trailing_zeros() as usize) as u32;
                count += 1;
                self.base = usize::MAX;
                break;
            }
            self.base += 64;
            self.blk = Self::load::<AVX2>(b, self.base, blk.carry);
            if count + 33 + 4 > STOPS {
                break;
            }
        }
        self.next = 0;
        self.count = count;
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

/// The byte classes of `s` (64 bytes) with AVX2: two compares of 32 bytes per class.
///
/// # Safety
/// The processor must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
#[allow(unsafe_code)]
unsafe fn classify_avx2(s: &[u8]) -> Classes {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256, _mm256_or_si256, _mm256_set1_epi8,
    };
    assert!(s.len() >= 64);
    let mut c = Classes::default();
    for half in 0..2 {
        // SAFETY: `s[32 * half..]` holds 32 readable bytes (asserted above; the load has no
        // alignment requirement), and the caller guarantees AVX2.
        let m = unsafe {
            // No closures here: a closure is compiled without the function's AVX2.
            let v = _mm256_loadu_si256(s.as_ptr().add(32 * half).cast::<__m256i>());
            let backslash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
            let quote = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8));
            let n = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'n' as i8));
            let t = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b't' as i8));
            let r = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'r' as i8));
            let plain = _mm256_or_si256(_mm256_or_si256(backslash, quote), _mm256_or_si256(n, _mm256_or_si256(t, r)));
            // Signed compare: bytes >= 0x80 are negative, so this flags them and controls.
            let special = _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), v);
            // `vpmovmskb` in `asm!`: LLVM reads two 32-bit masks of one 64-bit value as a
            // vector of 64 booleans, which it lowers byte by byte without AVX-512.
            macro_rules! movemask {
                ($v:expr) => {{
                    let m: u32;
                    std::arch::asm!("vpmovmskb {m:e}, {v}", m = out(reg) m, v = in(ymm_reg) $v,
                        options(pure, nomem, nostack, preserves_flags));
                    u64::from(m)
                }};
            }
            [movemask!(backslash), movemask!(quote), movemask!(n), movemask!(plain), movemask!(special)]
        };
        let shift = 32 * half;
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[allow(unsafe_code)]
    fn avx2_and_portable_classes_agree() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let text: Vec<u8> = (0u8..=255).chain(b"\\\"ntr".iter().copied()).collect();
        for at in 0..text.len() - 64 {
            // SAFETY: AVX2 was detected above.
            let got = unsafe { classify_avx2(&text[at..at + 64]) };
            assert_eq!(got, classify_bytes(&text[at..at + 64]), "at {at}");
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
