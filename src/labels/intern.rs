//! Dense ids for the changed-line keys of one pair: an open-addressing hash table over spans.
//!
//! Contract: [`Interner::intern`] gives equal (namespace, bytes) keys the same id and different
//! keys different ids; ids count up from 0 in order of first appearance since
//! [`Interner::reset`]. Keys are never copied: an entry remembers where its bytes are. The
//! caller's `tail(side, span)` gives the bytes of a span's buffer from the span's start to the
//! end of the buffer, the key being the first `span.len()` of them; the bytes after the key let
//! keys of up to [`BLOCK`] bytes be hashed as one fixed-size block, with no branch on their
//! length (a length that varies from line to line is a branch the processor cannot predict). A key with fewer than [`BLOCK`] bytes after its start is copied into a padded block
//! first, so a key hashes the same wherever it is. The hash has a fixed seed: a collision only
//! costs a comparison, never a wrong id.

use super::diffparse::Span;

/// Keys up to this long are hashed and compared as one block.
pub const BLOCK: usize = 128;

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
    #[inline]
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
                if e.ns == ns && e.span.len() == len && tail(usize::from(e.side), e.span)[..len] == key[..len] {
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

/// `len` bytes of `BLOCK` ones, then zeros: the mask of a key's bytes in its block is
/// `MASK[BLOCK - len..][..BLOCK]`.
static MASK: [u8; 2 * BLOCK] = {
    let mut m = [0u8; 2 * BLOCK];
    let mut i = 0;
    while i < BLOCK {
        m[i] = 0xff;
        i += 1;
    }
    m
};

/// The mask of the first `len` bytes of a block (`len <= BLOCK`).
#[inline(always)]
fn mask(len: usize) -> &'static [u8; BLOCK] {
    MASK[BLOCK - len..][..BLOCK].try_into().expect("BLOCK bytes")
}

/// The hash of the key `tail[..len]` with `seed` (see the module contract).
#[inline(always)]
pub fn hash_key(seed: u64, tail: &[u8], len: usize) -> u64 {
    match tail.get(..BLOCK) {
        Some(block) if len <= BLOCK => hash_block(seed, block.try_into().expect("BLOCK bytes"), len),
        _ => hash_cold(seed, &tail[..len]),
    }
}

/// [`hash_key`] of a key longer than [`BLOCK`], or too near the end of its buffer to be read
/// as a block (copied into one).
#[cold]
fn hash_cold(seed: u64, key: &[u8]) -> u64 {
    if key.len() > BLOCK {
        return hash_bytes(seed, key);
    }
    let mut pad = [0u8; BLOCK];
    pad[..key.len()].copy_from_slice(key);
    hash_block(seed, &pad, key.len())
}

const K: [u64; 16] = [
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
    0xba7c_9045_f12c_7f99,
    0x24a1_9947_b391_6cf7,
    0x0801_f2e2_858e_fc16,
    0x6369_20d8_7157_1c5b,
];

/// The 128-bit product of `a` and `b`, its halves folded together.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The hash of the first `len` bytes of `block`: its 16 words masked, folded in eight
/// independent multiplies, combined with rotations (so word order matters) and folded once
/// more with the seed and the length. The same work for every length up to [`BLOCK`].
#[inline(always)]
fn hash_block(seed: u64, block: &[u8; BLOCK], len: usize) -> u64 {
    let m = mask(len);
    let word = |i: usize| {
        let x = u64::from_le_bytes(block[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        let keep = u64::from_le_bytes(m[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        (x & keep) ^ K[i]
    };
    let mut f = [0u64; 8];
    for (i, f) in f.iter_mut().enumerate() {
        *f = fold(word(2 * i), word(2 * i + 1));
    }
    let a = f[0] ^ f[1].rotate_left(11) ^ f[2].rotate_left(22) ^ f[3].rotate_left(33);
    let b = f[4] ^ f[5].rotate_left(11) ^ f[6].rotate_left(22) ^ f[7].rotate_left(33);
    fold(a ^ seed.wrapping_mul(K[0]), b ^ len as u64 ^ K[1])
}

/// The hash of a key longer than [`BLOCK`] (16 bytes per folded multiply, in the style of
/// wyhash/foldhash).
fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    #[inline]
    fn word(b: &[u8]) -> u64 {
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
    let mut h = seed.wrapping_mul(K[0]) ^ bytes.len() as u64;
    let mut rest = bytes;
    // Blocks are folded independently (no multiply waits for the previous one) and combined
    // with a rotation, so their order still matters.
    while rest.len() > 16 {
        h = h.rotate_left(23) ^ fold(word(rest) ^ K[2], word(&rest[8..]) ^ K[3]);
        rest = &rest[16..];
    }
    // `bytes` is longer than 16, so the last 16 bytes are there (overlapping the last block).
    let last = &bytes[bytes.len() - 16..];
    fold(fold(word(last) ^ K[2] ^ h, word(&last[8..]) ^ K[3]), K[1] ^ bytes.len() as u64)
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
