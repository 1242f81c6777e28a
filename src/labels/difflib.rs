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
    if total == 0 {
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
    len: Vec<u32>,
    stamp: Vec<u32>,
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

/// A `SequenceMatcher` with its `b2j` index built.
///
/// `b2j` is CSR: positions of element `e` in `b` are `pos[start[e]..start[e + 1]]`, ascending;
/// empty for popular elements and elements absent from `b`. `j2len` of the current and
/// previous row: `len[j]` is valid when `stamp[j]` is the row.
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
        let Buffers { count, start, fill, pos, len, stamp, .. } = &mut buf;
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
        zeroed(pos, acc as usize);
        for (j, &e) in b.iter().enumerate() {
            let e = e as usize;
            if count[e] > 0 {
                pos[fill[e] as usize] = j as u32;
                fill[e] += 1;
            }
        }
        zeroed(len, n);
        zeroed(stamp, n);
        Matcher { a, b, buf, row: 0 }
    }

    /// CPython's `find_longest_match(alo, ahi, blo, bhi)` (no junk): `(i, j, size)`.
    pub fn find_longest_match(&mut self, alo: usize, ahi: usize, blo: usize, bhi: usize) -> (usize, usize, usize) {
        let (a, b) = (self.a, self.b);
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0usize);
        let Buffers { start, pos, len, stamp, .. } = &mut self.buf;
        if (self.row as usize).saturating_add(ahi - alo + 2) >= u32::MAX as usize {
            stamp.iter_mut().for_each(|s| *s = 0);
            self.row = 0;
        }
        // A row number no row of this call writes, so the first row reads nothing.
        self.row += 1;
        for (i, &ai) in a.iter().enumerate().take(ahi).skip(alo) {
            let prev = self.row;
            self.row += 1;
            let cur = self.row;
            let e = ai as usize;
            let lo = start[e] as usize;
            let hi = start.get(e + 1).map(|&h| h as usize).unwrap_or(pos.len());
            let js = &pos[lo..hi];
            // The first (and largest) call spans all of `b`: no search needed there.
            let from = if blo == 0 { 0 } else { js.partition_point(|&j| (j as usize) < blo) };
            let to = if bhi == b.len() { js.len() } else { js.partition_point(|&j| (j as usize) < bhi) };
            // Longest run ending in this row, and the smallest j reaching it (CPython scans j
            // upwards and only replaces on a strictly longer run).
            let (mut row_best, mut row_j) = (0u32, 0usize);
            for &j in js[from..to].iter().rev() {
                let j = j as usize;
                let k = if j > 0 && stamp[j - 1] == prev { len[j - 1] + 1 } else { 1 };
                len[j] = k;
                stamp[j] = cur;
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
