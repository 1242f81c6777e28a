//! Dense ids for the changed-line keys of one pair: an open-addressing hash table over spans.
//!
//! Contract: [`Interner::intern`] gives equal (namespace, bytes) keys the same id and different
//! keys different ids; ids count up from 0 in order of first appearance since
//! [`Interner::reset`]. Keys are never copied: an entry remembers where its bytes are. The
//! caller's `tail(side, span)` gives the bytes of a span's buffer from the span's start to the
//! end of the buffer, the key being the first `span.len()` of them. A key is hashed from three
//! [`WINDOW`]-byte windows (its first, middle and last 32 bytes; one window, masked, for a
//! shorter key, which may read the buffer past the key's end), so the hash does the same work
//! for every length, with no branch on it (a length that varies from line to line is a branch
//! the processor cannot predict). A key shorter than a window with fewer than [`WINDOW`] bytes
//! after its start is copied into a padded window first, so a key hashes the same wherever it
//! is. Keys of up to 96 bytes are compared through the same windows; the bytes of a longer key
//! that no window covers are only compared, not hashed. The hash has a fixed seed: a collision
//! only costs a comparison, never a wrong id.

use super::diffparse::Span;

/// A key is hashed in windows of this many bytes.
pub const WINDOW: usize = 32;

/// The table (see the module contract). A slot holds the id and the top half of the key's
/// hash, so a probe reads an entry (and compares bytes) only when the hash matches: a key seen
/// for the first time is decided by the slots alone.
#[derive(Default)]
pub struct Interner {
    /// `hash >> 32 << 32 | id + 1` per slot, 0 for empty; the length is a power of two, at
    /// most half full.
    slots: Vec<u64>,
    entries: Vec<Entry>,
}

struct Entry {
    /// The low half of the hash (the table index), kept for growing.
    low: u32,
    ns: u32,
    side: u8,
    span: Span,
}

impl Interner {
    /// Empties the table, sized for about `expected` keys.
    pub fn reset(&mut self, expected: usize) {
        let size = (expected * 2).next_power_of_two().max(16);
        self.slots.clear();
        self.slots.resize(size, 0);
        self.entries.clear();
    }

    /// The number of distinct keys (every id is below it).
    pub fn distinct(&self) -> usize {
        self.entries.len()
    }

    /// The id of the key `span` of `side` in namespace `ns` (see the module contract for `tail`).
    #[inline(always)]
    pub fn intern<'t>(&mut self, ns: u32, side: usize, span: Span, tail: &impl Fn(usize, Span) -> &'t [u8]) -> u32 {
        let len = span.len();
        let key = tail(side, span);
        let hash = hash_key(u64::from(ns), key, len);
        let tag = hash & !0xffff_ffff;
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                break;
            }
            if slot & !0xffff_ffff == tag {
                let id = (slot as u32).wrapping_sub(1);
                let e = &self.entries[id as usize];
                if e.ns == ns && e.span.len() == len && same_key(tail(usize::from(e.side), e.span), key, len) {
                    return id;
                }
            }
            i = (i + 1) & mask;
        }
        let id = self.entries.len() as u32;
        self.entries.push(Entry { low: hash as u32, ns, side: side as u8, span });
        self.slots[i] = tag | u64::from(id + 1);
        if self.entries.len() * 2 > self.slots.len() {
            self.grow();
        }
        id
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        let size = old.len() * 2;
        self.slots.resize(size, 0);
        for slot in old.into_iter().filter(|&s| s != 0) {
            let e = &self.entries[(slot as u32 - 1) as usize];
            let mut i = e.low as usize & (size - 1);
            while self.slots[i] != 0 {
                i = (i + 1) & (size - 1);
            }
            self.slots[i] = slot;
        }
    }
}

/// `WINDOW` ones, then `WINDOW` zeros: the mask of a window's first `w` bytes is
/// `MASK[WINDOW - w..][..WINDOW]`.
static MASK: [u8; 2 * WINDOW] = {
    let mut m = [0u8; 2 * WINDOW];
    let mut i = 0;
    while i < WINDOW {
        m[i] = 0xff;
        i += 1;
    }
    m
};

/// The four little-endian words of `b[at..at + WINDOW]`.
#[inline(always)]
fn words(b: &[u8], at: usize) -> [u64; 4] {
    let w: &[u8; WINDOW] = b[at..at + WINDOW].try_into().expect("WINDOW bytes");
    let word = |i: usize| u64::from_le_bytes(w[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    [word(0), word(1), word(2), word(3)]
}

/// The hash of the key `tail[..len]` with `seed` (see the module contract).
#[inline(always)]
pub fn hash_key(seed: u64, tail: &[u8], len: usize) -> u64 {
    match tail.get(..len.max(WINDOW)) {
        Some(buf) => hash_windows(seed, buf, len),
        None => hash_cold(seed, &tail[..len]),
    }
}

/// Whether the keys `x[..len]` and `y[..len]` are equal (false if `x` is shorter). A key of up
/// to three windows is covered by the windows [`hash_windows`] reads, compared masked with no
/// branch on the length (`memcmp` branches on it); a longer one, or one too near the end of its
/// buffer, goes to `memcmp`.
#[inline(always)]
fn same_key(x: &[u8], y: &[u8], len: usize) -> bool {
    match (x.get(..len.max(WINDOW)), y.get(..len.max(WINDOW))) {
        (Some(x), Some(y)) if len <= 3 * WINDOW => {
            let w = len.min(WINDOW);
            let m = words(&MASK, WINDOW - w);
            let far = len - w;
            let mut diff = 0;
            for at in [0, far / 2, far] {
                let (a, b) = (words(x, at), words(y, at));
                for i in 0..4 {
                    diff |= (a[i] ^ b[i]) & m[i];
                }
            }
            diff == 0
        }
        _ => x.get(..len) == y.get(..len),
    }
}

/// [`hash_key`] of a key shorter than [`WINDOW`] too near the end of its buffer to be read as
/// a window (copied into one).
#[cold]
fn hash_cold(seed: u64, key: &[u8]) -> u64 {
    let mut pad = [0u8; WINDOW];
    pad[..key.len()].copy_from_slice(key);
    hash_windows(seed, &pad, key.len())
}

const K: [u64; 12] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
    0x4528_21e6_38d0_1377,
    0xbe54_66cf_34e9_0c6c,
    0xc0ac_29b7_c97c_50dd,
    0x3f84_d5b5_b547_0917,
    0x9216_d5d9_8979_fb1b,
    0xd131_0ba6_98df_b5ac,
    0x2ffd_72db_d01a_dfb7,
    0xb8e1_afed_6a26_7e96,
];

/// The 128-bit product of `a` and `b`, its halves folded together.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The hash of the key `buf[..len]` (`buf` holds at least [`WINDOW`] bytes): its first, middle
/// and last [`WINDOW`] bytes (one window, masked, for a shorter key), folded in six independent
/// multiplies, combined with rotations (so the order matters) and folded once more with the
/// seed and the length. The same work for every length.
#[inline(always)]
fn hash_windows(seed: u64, buf: &[u8], len: usize) -> u64 {
    let w = len.min(WINDOW);
    let m = words(&MASK, WINDOW - w);
    let far = len - w;
    let [h, c, t] = [0, far / 2, far].map(|at| words(buf, at));
    let x = |v: [u64; 4], i: usize, k: usize| (v[i] & m[i]) ^ K[k];
    let f = [
        fold(x(h, 0, 0), x(h, 1, 1)),
        fold(x(h, 2, 2), x(h, 3, 3)),
        fold(x(c, 0, 4), x(c, 1, 5)),
        fold(x(c, 2, 6), x(c, 3, 7)),
        fold(x(t, 0, 8), x(t, 1, 9)),
        fold(x(t, 2, 10), x(t, 3, 11)),
    ];
    let a = f[0] ^ f[1].rotate_left(11) ^ f[2].rotate_left(22);
    let b = f[3] ^ f[4].rotate_left(11) ^ f[5].rotate_left(22);
    fold(a ^ seed.wrapping_mul(K[0]), b ^ len as u64 ^ K[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys at every offset of a buffer (so some near its end take the padded block) hash the
    /// same as the same key alone.
    #[test]
    fn keys_hash_and_compare_alike_wherever_they_are() {
        let mut rnd = super::super::test_rng();
        let alphabet = b"ab\\\"x -+";
        let mut text = Vec::new();
        for _ in 0..3000 {
            text.push(alphabet[rnd(alphabet.len())]);
        }
        for _ in 0..2000 {
            let len = rnd(300);
            let at = rnd(text.len() - len + 1);
            let key = &text[at..at + len];
            let alone = key.to_vec();
            for seed in [0, 7] {
                assert_eq!(hash_key(seed, &text[at..], len), hash_key(seed, &alone, len), "at {at} len {len}");
            }
        }
    }

    /// Keys equal but for one byte anywhere (the windows of a key up to 96 bytes long must
    /// cover every byte) compare unequal, equal keys equal, wherever they are.
    #[test]
    fn window_comparison_sees_every_byte() {
        let mut rnd = super::super::test_rng();
        for _ in 0..4000 {
            let len = rnd(140);
            let key: Vec<u8> = (0..len).map(|_| b"ab"[rnd(2)]).collect();
            let mut other = key.clone();
            if len > 0 && rnd(2) == 0 {
                other[rnd(len)] ^= 0x20;
            }
            // Each key somewhere in a buffer with a few bytes or none after it.
            let place = |k: &[u8], rnd: &mut dyn FnMut(usize) -> usize| {
                let mut buf: Vec<u8> = (0..rnd(40)).map(|_| b'x').collect();
                let at = buf.len();
                buf.extend_from_slice(k);
                buf.extend((0..rnd(3) * 20).map(|_| b'y'));
                (buf, at)
            };
            let ((x, xa), (y, ya)) = (place(&key, &mut rnd), place(&other, &mut rnd));
            assert_eq!(same_key(&x[xa..], &y[ya..], len), key == other, "len {len}");
        }
        assert!(!same_key(b"ab", b"abc", 3));
    }

    #[test]
    fn ids_are_dense_and_equal_for_equal_keys() {
        let mut rnd = super::super::test_rng();
        let words: Vec<Vec<u8>> = (0..40).map(|i| vec![b'k'; i * 7 % 150]).collect();
        // Both sides in one buffer, like `label --pairs`.
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for _ in 0..400 {
            let (w, ns) = (rnd(words.len()), rnd(3) as u32);
            let start = buf.len() as u32;
            buf.extend_from_slice(&words[w]);
            spans.push((ns, w, Span::input(start, buf.len() as u32)));
        }
        let tail = |_: usize, s: Span| &buf[s.range().1.start..];
        let mut t = Interner::default();
        t.reset(4);
        let mut seen = std::collections::HashMap::new();
        for &(ns, w, span) in &spans {
            let id = t.intern(ns, 0, span, &tail);
            let want = seen.len() as u32;
            assert_eq!(*seen.entry((ns, words[w].clone())).or_insert(want), id);
        }
        assert_eq!(t.distinct(), seen.len());
    }
}
