//! A faithful port of Python's `difflib.SequenceMatcher(None, a, b).ratio()` over integer
//! sequences.
//!
//! Contract: [`ratio`] returns bit-for-bit the value CPython returns for the same sequences
//! (no junk function, `autojunk=True`): `b2j` drops the "popular" elements of `b` (when
//! `len(b) >= 200`, those occurring more than `len(b) // 100 + 1` times), `find_longest_match`
//! picks the longest block that starts earliest in `a`, then earliest in `b`, and extends it on
//! both sides by equal elements (popular ones included, exactly as CPython's non-junk extension
//! does), `get_matching_blocks` recurses on the left and right remainders, and the ratio is
//! `2.0 * M / T` (1.0 when both sequences are empty). The arithmetic is the same IEEE sequence
//! as CPython's, so the values are identical, not just close.
//!
//! Speed comes from integers instead of strings, a flat (CSR) `b2j`, and a dense `j2len`
//! array stamped with a row number instead of CPython's per-row dictionaries: each row walks
//! its `b` positions from right to left so that reading row `i-1`'s value at `j-1` happens
//! before row `i` overwrites it.

/// `SequenceMatcher(None, a, b).ratio()`.
pub fn ratio(a: &[u32], b: &[u32]) -> f64 {
    ratio_with(a, b, &mut Buffers::default())
}

/// [`ratio`], reusing the working memory of earlier calls.
pub fn ratio_with(a: &[u32], b: &[u32], bufs: &mut Buffers) -> f64 {
    let total = a.len() + b.len();
    // Equal sequences without the popular purge: the one longest block is all of both.
    if total == 0 || (a.len() < 200 && a == b) {
        return 1.0;
    }
    let mut m = Matcher::with_buffers(a, b, std::mem::take(bufs));
    let matches = m.matching_total();
    *bufs = m.buf;
    2.0 * matches as f64 / total as f64
}

/// The working memory of a [`Matcher`], kept between matchers to avoid allocating.
#[derive(Default)]
pub struct Buffers {
    count: Vec<u32>,
    start: Vec<u32>,
    fill: Vec<u32>,
    pos: Vec<u32>,
    runs: Vec<u64>,
    queue: Vec<(usize, usize, usize, usize)>,
}

/// Empties `v` and fills it with `n` zeros.
fn zeroed(v: &mut Vec<u32>, n: usize) {
    v.clear();
    v.resize(n, 0);
}

/// The number of matched elements (the sum of `get_matching_blocks` sizes).
pub fn matches(a: &[u32], b: &[u32]) -> usize {
    Matcher::new(a, b).matching_total()
}

/// The run ending at the next element of `b` in a row, given `run` (the `runs` entry of the
/// element before it) and the row before: one more than that row's run, 1 if the entry is older.
/// Without a branch: whether the run continues is data.
#[inline(always)]
fn run_after(run: u64, prev: u32) -> u32 {
    1 + (run as u32 & 0u32.wrapping_sub(u32::from((run >> 32) as u32 == prev)))
}

/// A `SequenceMatcher` with its `b2j` index built.
///
/// `b2j` is CSR: positions of element `e` in `b` are `pos[start[e]..start[e + 1]]`, ascending;
/// empty for popular elements and elements absent from `b`. `j2len` of the current and
/// previous row, one place to the right: `runs[j + 1]` holds, in its high half, the row that
/// wrote it and, in its low half, the run ending at `b[j]` in that row (one load and one store
/// per step; `runs[0]` stands before `b` and is never written, so reading the run ending before
/// `b[0]` needs no test; `runs[n + 1]` is written and never read, the target of a row's write
/// when it has nothing to write).
pub struct Matcher<'s> {
    a: &'s [u32],
    b: &'s [u32],
    buf: Buffers,
    row: u32,
}

impl<'s> Matcher<'s> {
    /// Builds `b2j` with the autojunk ("popular") purge.
    pub fn new(a: &'s [u32], b: &'s [u32]) -> Matcher<'s> {
        Matcher::with_buffers(a, b, Buffers::default())
    }

    /// [`Matcher::new`] in the given working memory.
    pub fn with_buffers(a: &'s [u32], b: &'s [u32], mut buf: Buffers) -> Matcher<'s> {
        let max_elt = a.iter().chain(b.iter()).copied().max().map(|m| m as usize + 1).unwrap_or(0);
        let Buffers { count, start, fill, pos, runs, .. } = &mut buf;
        zeroed(count, max_elt + 1);
        for &e in b {
            count[e as usize] += 1;
        }
        let n = b.len();
        if n >= 200 {
            let ntest = (n / 100 + 1) as u32;
            for c in count.iter_mut() {
                if *c > ntest {
                    *c = 0; // popular: removed from b2j
                }
            }
        }
        zeroed(start, max_elt + 1);
        let mut acc = 0u32;
        for (s, c) in start.iter_mut().zip(count.iter()) {
            *s = acc;
            acc += c;
        }
        fill.clear();
        fill.extend_from_slice(start);
        // One more: `pos[start[e]]` can be read for any element, even one that is absent.
        zeroed(pos, acc as usize + 1);
        for (j, &e) in b.iter().enumerate() {
            let e = e as usize;
            if count[e] > 0 {
                pos[fill[e] as usize] = j as u32;
                fill[e] += 1;
            }
        }
        runs.clear();
        runs.resize(n + 2, 0);
        Matcher { a, b, buf, row: 0 }
    }

    /// CPython's `find_longest_match(alo, ahi, blo, bhi)` (no junk): `(i, j, size)`.
    pub fn find_longest_match(&mut self, alo: usize, ahi: usize, blo: usize, bhi: usize) -> (usize, usize, usize) {
        let (a, b) = (self.a, self.b);
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0usize);
        let Buffers { start, pos, runs, .. } = &mut self.buf;
        if (self.row as usize).saturating_add(ahi - alo + 2) >= u32::MAX as usize {
            runs.iter_mut().for_each(|s| *s = 0);
            self.row = 0;
        }
        // A row number no row of this call writes, so the first row reads nothing.
        self.row += 1;
        let whole = blo == 0 && bhi == b.len();
        for (i, &ai) in a[alo..ahi].iter().enumerate().map(|(k, e)| (alo + k, e)) {
            let prev = self.row;
            self.row += 1;
            let cur = self.row;
            let e = ai as usize;
            let lo = start[e] as usize;
            let hi = start.get(e + 1).map_or(lo, |&h| h as usize);
            let js = &pos[lo..hi];
            // The first (and largest) call spans all of `b`: no search needed there. Most
            // elements occur a few times: counting those below the bounds takes no branch that
            // depends on the data, where a binary search mispredicts.
            let (from, to) = if whole {
                (0, js.len())
            } else if js.len() <= 1 {
                let (j, one) = (pos[lo] as usize, js.len());
                (one & usize::from(j < blo), one & usize::from(j < bhi))
            } else if js.len() <= 8 {
                let below = |bound: usize| js.iter().map(|&j| usize::from((j as usize) < bound)).sum::<usize>();
                (below(blo), below(bhi))
            } else {
                (js.partition_point(|&j| (j as usize) < blo), js.partition_point(|&j| (j as usize) < bhi))
            };
            // Longest run ending in this row, and the smallest j reaching it (CPython scans j
            // upwards and only replaces on a strictly longer run).
            let (mut row_best, mut row_j) = (0u32, 0usize);
            let ours = &js[from..to];
            if ours.len() <= 1 {
                // Most rows have one position or none: one step without a branch on which (a
                // row without one writes to the spare slot and counts a run of 0).
                let j = pos[lo + from] as usize;
                let there = u32::from(!ours.is_empty());
                let k = run_after(runs[j], prev);
                // `j + 1` if there is one, else the spare slot, by a mask (an `if` here became a
                // branch).
                let spare = runs.len() - 1;
                let at = spare ^ ((spare ^ (j + 1)) & 0usize.wrapping_sub(there as usize));
                runs[at] = (u64::from(cur) << 32) | u64::from(k);
                row_best = k * there;
                row_j = j;
            }
            for &j in ours.iter().rev().take(if ours.len() > 1 { ours.len() } else { 0 }) {
                let j = j as usize;
                let k = run_after(runs[j], prev);
                runs[j + 1] = (u64::from(cur) << 32) | u64::from(k);
                if k >= row_best {
                    row_best = k;
                    row_j = j;
                }
            }
            let k = row_best as usize;
            if k > bestsize {
                besti = i + 1 - k;
                bestj = row_j + 1 - k;
                bestsize = k;
            }
        }
        // Extend by equal (non-junk: there is no junk) elements on each end.
        while besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1] {
            besti -= 1;
            bestj -= 1;
            bestsize += 1;
        }
        while besti + bestsize < ahi && bestj + bestsize < bhi && a[besti + bestsize] == b[bestj + bestsize] {
            bestsize += 1;
        }
        (besti, bestj, bestsize)
    }

    /// The sum of the sizes of CPython's `get_matching_blocks()`.
    pub fn matching_total(&mut self) -> usize {
        let mut total = 0;
        let mut queue = std::mem::take(&mut self.buf.queue);
        queue.clear();
        queue.push((0, self.a.len(), 0, self.b.len()));
        while let Some((alo, ahi, blo, bhi)) = queue.pop() {
            let (i, j, k) = self.find_longest_match(alo, ahi, blo, bhi);
            if k > 0 {
                total += k;
                if alo < i && blo < j {
                    queue.push((alo, i, blo, j));
                }
                if i + k < ahi && j + k < bhi {
                    queue.push((i + k, ahi, j + k, bhi));
                }
            }
        }
        self.buf.queue = queue;
        total
    }

    /// CPython's `get_matching_blocks()` without the final dummy block, sorted and merged.
    pub fn matching_blocks(&mut self) -> Vec<(usize, usize, usize)> {
        let mut blocks = Vec::new();
        let mut queue = vec![(0, self.a.len(), 0, self.b.len())];
        while let Some((alo, ahi, blo, bhi)) = queue.pop() {
            let (i, j, k) = self.find_longest_match(alo, ahi, blo, bhi);
            if k > 0 {
                blocks.push((i, j, k));
                if alo < i && blo < j {
                    queue.push((alo, i, blo, j));
                }
                if i + k < ahi && j + k < bhi {
                    queue.push((i + k, ahi, j + k, bhi));
                }
            }
        }
        blocks.sort_unstable();
        let mut merged: Vec<(usize, usize, usize)> = Vec::with_capacity(blocks.len());
        for (i, j, k) in blocks {
            match merged.last_mut() {
                Some(last) if last.0 + last.2 == i && last.1 + last.2 == j => last.2 += k,
                _ => merged.push((i, j, k)),
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> Vec<u32> {
        s.bytes().map(u32::from).collect()
    }

    #[test]
    fn docstring_examples() {
        assert_eq!(ratio(&seq("abcd"), &seq("bcde")), 0.75);
        let (a, b) = (seq(" abcd"), seq("abcd abcd"));
        assert_eq!(Matcher::new(&a, &b).find_longest_match(0, 5, 0, 9), (0, 4, 5));
        let (a, b) = (seq("abxcd"), seq("abcd"));
        assert_eq!(Matcher::new(&a, &b).matching_blocks(), vec![(0, 0, 2), (3, 2, 2)]);
        let (a, b) = (seq("ab"), seq("c"));
        assert_eq!(Matcher::new(&a, &b).find_longest_match(0, 2, 0, 1), (0, 0, 0));
        assert_eq!(ratio(&[], &[]), 1.0);
        assert_eq!(ratio(&[1], &[]), 0.0);
    }

    #[test]
    fn autojunk_purges_popular_elements_of_b_only() {
        // 200 copies of one element: popular in b, so only the edge extension can match.
        let a = vec![7u32; 200];
        let b = vec![7u32; 200];
        assert_eq!(ratio(&a, &b), 1.0); // extends forward from (0, 0) through equal elements
        let mut b2 = vec![7u32; 199];
        b2.insert(0, 1);
        // CPython: SequenceMatcher(None, [7]*200, [1]+[7]*199).ratio() == 0.0
        assert_eq!(ratio(&a, &b2), 0.0);
    }
}
