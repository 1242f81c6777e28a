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
//! `tests/labels.rs` checks parity). Keys are interned to dense integers once per pair, in a
//! hash table ([`intern`]) that [`Work`] keeps across pairs (no allocation per pair once warm).
//!
//! Sub-modules: [`diffparse`] (the parsing rule), [`jsonstr`] (diff lines read straight from
//! JSON string literals, validated in the same pass), [`jsonblock`] (the 64-byte masks its
//! line splitter reads), [`intern`] (dense ids for keys), [`jsonrec`] (one-pass reader of a
//! `{"id","candidate","final"}` line), [`difflib`] (the SequenceMatcher port), [`gitdiff`]
//! (unified diffs from git objects), [`pairs`] (`label --pairs` JSONL streaming), [`landed`]
//! (labelling the attempts of landed tasks in the ledger).

pub mod difflib;
pub mod diffparse;
pub mod gitdiff;
pub mod intern;
pub mod jsonblock;
pub mod jsonrec;
pub mod jsonstr;
pub mod landed;
pub mod pairs;

pub use crate::ledger::Labels;
use diffparse::{parse, Buffer, Span, TextSource};
use intern::Interner;

/// Labels of a candidate diff against a final diff (see the module contract).
pub fn score(candidate: &str, final_diff: &str) -> Labels {
    let texts = [candidate.as_bytes(), final_diff.as_bytes()];
    let tail = |side: usize, span: Span| match span.range() {
        (Buffer::Input, r) => &texts[side][r.start..],
        (Buffer::Decoded, _) => &b""[..],
    };
    let mut work = Work::default();
    work.begin(candidate.len() + final_diff.len());
    for (side, text) in [candidate, final_diff].into_iter().enumerate() {
        parse(&mut TextSource::new(text), |_, p, l| work.add(side, p, l, &tail));
    }
    work.labels()
}

/// Working memory for labelling pairs, reused from one pair to the next: keys are interned
/// as the parser finds them ([`Work::add`]), while their bytes are still in cache.
#[derive(Default)]
pub struct Work {
    paths: Interner,
    lines: Interner,
    /// The key ids of the candidate (0) and the final diff (1).
    seq: [Vec<u32>; 2],
    /// The last path span added per side and its id (paths change once per file header).
    last_path: [Option<(Span, u32)>; 2],
    seen: Vec<u8>,
    matcher: difflib::Buffers,
}

impl Work {
    /// Starts a pair whose two diffs hold about `bytes` bytes.
    pub fn begin(&mut self, bytes: usize) {
        // About one changed line per 64 bytes; the table grows when there are more.
        self.lines.reset(bytes / 64);
        self.paths.reset(8);
        self.seq.iter_mut().for_each(Vec::clear);
        self.last_path = [None, None];
    }

    /// Adds the next changed line of `side` (0: candidate, 1: final); `tail(side, span)` gives
    /// the bytes of the buffer of this and every earlier span of the pair from the span's start
    /// on ([`LineSource::tail`](diffparse::LineSource::tail)).
    #[inline]
    pub fn add<'t>(&mut self, side: usize, path: Span, key: Span, tail: &impl Fn(usize, Span) -> &'t [u8]) {
        let pid = match self.last_path[side] {
            Some((span, pid)) if span == path => pid,
            _ => {
                let pid = self.paths.intern(0, side, path, tail);
                self.last_path[side] = Some((path, pid));
                pid
            }
        };
        let id = self.lines.intern(pid, side, key, tail);
        self.seq[side].push(id);
    }

    /// Gives side `to` the changed lines added to side `from` (the two diffs are equal).
    pub fn copy_side(&mut self, from: usize, to: usize) {
        let [a, b] = &mut self.seq;
        let (src, dst) = if from == 0 { (a, b) } else { (b, a) };
        debug_assert!(from != to && dst.is_empty());
        dst.clear();
        dst.extend_from_slice(src);
    }

    /// The labels of the pair added since [`Work::begin`].
    pub fn labels(&mut self) -> Labels {
        let Work { lines, seq, seen, matcher, .. } = self;
        labels_of(&seq[0], &seq[1], lines.distinct(), seen, matcher)
    }
}

/// Labels of two interned key sequences whose ids are all below `distinct`.
fn labels_of(a: &[u32], b: &[u32], distinct: usize, seen: &mut Vec<u8>, matcher: &mut difflib::Buffers) -> Labels {
    // Bit 1: in A, bit 2: in B.
    seen.clear();
    seen.resize(distinct, 0);
    // Counted while marking: a first mark adds to the union, B's first mark of an A key to the
    // intersection.
    let (mut union, mut inter) = (0usize, 0usize);
    for &x in a {
        let s = &mut seen[x as usize];
        union += usize::from(*s == 0);
        *s = 1;
    }
    for &x in b {
        let s = &mut seen[x as usize];
        union += usize::from(*s == 0);
        inter += usize::from(*s == 1);
        *s |= 2;
    }
    let jaccard = if union == 0 { 1.0 } else { inter as f64 / union as f64 };
    let ratio = difflib::ratio_with(a, b, matcher);
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

/// A fixed-seed xorshift generator for the readers' randomized tests: `rnd(n)` is in `0..n`, the
/// same sequence on every run (a failure replays).
#[cfg(test)]
fn test_rng() -> impl FnMut(usize) -> usize {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
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
