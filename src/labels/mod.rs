//! Diff-similarity labels: how close a candidate patch is to the patch that landed.
//!
//! Contract: [`score`] computes, for a candidate diff A and a final diff B (unified diff text),
//! - `jaccard` = |A ∩ B| / |A ∪ B| over the sets of changed-line keys (1.0 when both are empty),
//! - `ratio` = Python's `difflib.SequenceMatcher(None, A, B).ratio()` over the key sequences in
//!   order, with the default autojunk heuristic (A is the candidate, B the final diff),
//! - `score` = (jaccard + ratio) / 2,
//!
//! where the keys are the `<path>\t<line>` changed lines of [`diffparse`]. The numbers equal
//! Python's (the arithmetic is the same; `benches/labels_ref.py` is the reference and
//! `tests/labels.rs` checks parity). Keys are interned to integers once per pair.
//!
//! Sub-modules: [`diffparse`] (the parsing rule), [`jsonstr`] (diff lines read straight from
//! JSON string literals), [`difflib`] (the SequenceMatcher port),
//! [`gitdiff`] (unified diffs from git objects), [`pairs`] (`label --pairs` JSONL streaming),
//! [`landed`] (labelling the attempts of landed tasks in the ledger).

pub mod difflib;
pub mod diffparse;
pub mod gitdiff;
pub mod jsonstr;
pub mod landed;
pub mod pairs;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub use crate::ledger::Labels;
use diffparse::{parse, LineSource, Span, TextSource};
use jsonstr::JsonStrSource;

/// Labels of a candidate diff against a final diff (see the module contract).
pub fn score(candidate: &str, final_diff: &str) -> Labels {
    score_sources(&mut TextSource::new(candidate), &mut TextSource::new(final_diff))
}

/// [`score`] of two diffs given as JSON string bodies (the text between the quotes of a JSON
/// string literal that a JSON parser accepted), without decoding lines that cannot matter.
pub fn score_json(candidate_body: &str, final_body: &str) -> Labels {
    score_sources(&mut JsonStrSource::new(candidate_body), &mut JsonStrSource::new(final_body))
}

/// Parses both diffs, interns their keys to integers and computes the labels.
pub fn score_sources<A: LineSource, B: LineSource>(a: &mut A, b: &mut B) -> Labels {
    let mut ka: Vec<(Span, Span)> = Vec::new();
    parse(a, |_, p, l| ka.push((p, l)));
    let mut kb: Vec<(Span, Span)> = Vec::new();
    parse(b, |_, p, l| kb.push((p, l)));
    let mut paths: FxMap<&str, u32> = FxMap::default();
    let mut ids: FxMap<(u32, &str), u32> = FxMap::with_capacity_and_hasher(ka.len() + kb.len(), Default::default());
    let seq_a = intern(&*a, &ka, &mut paths, &mut ids);
    let seq_b = intern(&*b, &kb, &mut paths, &mut ids);
    labels_of(&seq_a, &seq_b, ids.len())
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Key ids of one diff: paths are interned once per header, lines with their path id.
fn intern<'s, S: LineSource>(
    src: &'s S,
    keys: &[(Span, Span)],
    paths: &mut FxMap<&'s str, u32>,
    ids: &mut FxMap<(u32, &'s str), u32>,
) -> Vec<u32> {
    let mut out = Vec::with_capacity(keys.len());
    let mut last: Option<(Span, u32)> = None;
    for &(p, l) in keys {
        let pid = match last {
            Some((span, pid)) if span == p => pid,
            _ => {
                let next = paths.len() as u32;
                let pid = *paths.entry(src.resolve(p)).or_insert(next);
                last = Some((p, pid));
                pid
            }
        };
        let next = ids.len() as u32;
        out.push(*ids.entry((pid, src.resolve(l))).or_insert(next));
    }
    out
}

/// Labels of two interned key sequences whose ids are all below `distinct`.
pub fn labels_of(a: &[u32], b: &[u32], distinct: usize) -> Labels {
    // Bit 1: in A, bit 2: in B.
    let mut seen = vec![0u8; distinct];
    for &x in a {
        seen[x as usize] |= 1;
    }
    for &x in b {
        seen[x as usize] |= 2;
    }
    let union = seen.iter().filter(|&&s| s != 0).count();
    let inter = seen.iter().filter(|&&s| s == 3).count();
    let jaccard = if union == 0 { 1.0 } else { inter as f64 / union as f64 };
    let ratio = difflib::ratio(a, b);
    Labels { jaccard, ratio, score: (jaccard + ratio) / 2.0 }
}

/// The similarity ratio of the `similar` crate over the same key sequences (an extra measure,
/// not the label: its matching differs from difflib's).
pub fn similar_ratio(candidate: &str, final_diff: &str) -> f64 {
    let join = |d: &str| diffparse::changed_lines(d).into_iter().map(|(p, l)| format!("{p}\t{l}")).collect::<Vec<_>>();
    let (a, b) = (join(candidate), join(final_diff));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    similar::TextDiff::configure().diff_slices(&a, &b).ratio() as f64
}

/// FxHash (the rustc hasher): fast for short keys; hash-flooding is not a concern for labels.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_diffs_are_identical() {
        let l = score("", "");
        assert_eq!((l.jaccard, l.ratio, l.score), (1.0, 1.0, 1.0));
        let bin = "diff --git a/x.bin b/x.bin\nindex 1..2 100644\nBinary files a/x.bin and b/x.bin differ\n";
        assert_eq!(score(bin, "").score, 1.0);
    }

    #[test]
    fn disjoint_and_partial() {
        let a = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-x\n+y\n";
        let b = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-x\n+z\n";
        let l = score(a, b);
        assert_eq!(l.jaccard, 1.0 / 3.0);
        assert_eq!(l.ratio, 0.5);
        assert_eq!(score(a, "").jaccard, 0.0);
        assert!(similar_ratio(a, b) > 0.0);
    }
}
