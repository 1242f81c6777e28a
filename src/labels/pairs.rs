//! `git hybrid label --pairs`: labels for a JSONL stream of diff pairs, computed in parallel.
//!
//! Contract: every non-blank input line is a JSON object `{"id", "candidate", "final"}` (`id` a
//! string or number, echoed back verbatim; `candidate` and `final` diff texts; other keys are
//! ignored). For each, one line `{"id","jaccard","ratio","score"}` is written, in input order.
//! Input is read in batches of whole lines of about [`BATCH_BYTES`] (small enough to stay in
//! cache). With one job, each batch is labelled and written in turn on the calling thread. With
//! more, a reader thread hands each batch whole to a rayon pool of `jobs` threads and the
//! calling thread writes the labelled batches in input order; at most `4 * jobs` batches are in
//! flight, so memory stays bounded. A malformed line is a [`HybridError::Usage`] naming its line number
//! (results of the lines before it are already written); with `skip_bad` it is skipped and
//! counted instead. Blank lines are ignored.
//!
//! Each line is read in one pass ([`super::jsonrec`], [`super::jsonstr`]): the JSON is
//! validated while the diff lines are found, keys are borrowed from the input, and the working
//! memory ([`super::Work`]) is reused from one pair to the next.

use std::cell::RefCell;
use std::io::{Read, Write};

use anyhow::{Context, Result};
use serde::Serialize;

use super::diffparse::{parse, LineSource, Span};
use super::jsonrec::read_record;
use super::jsonstr::JsonStrSource;
use super::Work;
use crate::error::HybridError;

/// Input bytes read per batch (a batch holds whole lines; a single longer line is read whole).
pub const BATCH_BYTES: usize = 256 << 10;

/// Options of one run.
#[derive(Debug, Clone)]
pub struct PairsOptions {
    /// Worker threads (at least 1).
    pub jobs: usize,
    /// Skip malformed lines (counted) instead of failing.
    pub skip_bad: bool,
    /// Name of the input in messages (`stdin` or the file path).
    pub source: String,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PairsSummary {
    /// Result lines written.
    pub written: usize,
    /// Malformed lines skipped (`skip_bad`).
    pub skipped: usize,
    /// Line numbers of the first skipped lines (at most 20).
    pub skipped_lines: Vec<usize>,
}

/// Working memory of one labelling thread.
#[derive(Default)]
struct LineWork {
    work: Work,
    /// Decoded diff lines of the current record.
    decoded: Vec<u8>,
}

/// Labels one input line, appending its output line to `out`; `Ok(false)` for a blank line.
fn label_line(line: &[u8], w: &mut LineWork, out: &mut Vec<u8>) -> Result<bool, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let LineWork { work, decoded } = w;
    work.begin(line.len());
    decoded.clear();
    // The first diff literal read: its side and its bytes from the opening quote on.
    let mut first: Option<(usize, std::ops::Range<usize>)> = None;
    let id = read_record(line, |side, at| {
        let side = side as usize;
        if let Some((other, r)) = first.clone() {
            // A diff byte for byte equal to the other one (an attempt that landed as it was):
            // the same literal, so the same changed lines.
            let len = r.len();
            if line.get(at - 1..at - 1 + len) == Some(&line[r]) {
                work.copy_side(other, side);
                return Ok(at - 1 + len);
            }
        }
        let mut src = JsonStrSource::new(line, at, decoded);
        // Both diffs' spans index the same line and decoded buffer, so `side` is not needed.
        parse(&mut src, |s, p, k| work.add(side, p, k, &|_, span| s.tail(span)));
        let end = src.finish()?;
        first = Some((side, at - 1..end));
        Ok(end)
    })?;
    let labels = work.labels();
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(&line[id]);
    for (name, value) in
        [(&b",\"jaccard\":"[..], labels.jaccard), (b",\"ratio\":", labels.ratio), (b",\"score\":", labels.score)]
    {
        out.extend_from_slice(name);
        serde_json::to_writer(&mut *out, &value).map_err(|e| e.to_string())?;
    }
    out.extend_from_slice(b"}\n");
    Ok(true)
}

/// The output of a group of consecutive lines.
#[derive(Default)]
struct GroupOut {
    out: Vec<u8>,
    written: usize,
    /// Malformed lines: (index in the batch, length of `out` before it, reason).
    bad: Vec<(usize, usize, String)>,
}

/// Labels `lines` (byte ranges of `data`; the first is line `first` of the batch) into `g`.
fn label_group(data: &[u8], lines: &[(u32, u32)], first: usize, w: &mut LineWork, g: &mut GroupOut) {
    for (k, &(s, e)) in lines.iter().enumerate() {
        let before = g.out.len();
        match label_line(&data[s as usize..e as usize], w, &mut g.out) {
            Ok(true) => g.written += 1,
            Ok(false) => {}
            Err(reason) => {
                g.out.truncate(before);
                g.bad.push((first + k, before, reason));
            }
        }
    }
}

/// A run of whole input lines: `data` ends after a `\n` (or at the end of the input).
struct Chunk {
    /// Line number of the first line in `data`.
    first_line: usize,
    data: Vec<u8>,
    /// Byte range of every line of `data`.
    lines: Vec<(u32, u32)>,
}

/// Reads the input in chunks of whole lines, reusing the buffers it is given back.
struct ChunkReader<R> {
    input: R,
    /// Bytes read past the last complete line.
    carry: Vec<u8>,
    next_line: usize,
    eof: bool,
    source: String,
    /// Bytes per batch and per read.
    batch: usize,
    read_size: usize,
}

impl<R: Read> ChunkReader<R> {
    /// The next chunk, in the buffers of a chunk that is no longer needed.
    fn next(&mut self, spare: Option<Chunk>) -> Result<Option<Chunk>> {
        if self.eof && self.carry.is_empty() {
            return Ok(None);
        }
        let (mut buf, mut lines) = spare.map(|c| (c.data, c.lines)).unwrap_or_default();
        buf.clear();
        lines.clear();
        buf.extend_from_slice(&self.carry);
        self.carry.clear();
        let mut scanned = 0;
        loop {
            if self.eof {
                break;
            }
            if buf.len() >= self.batch && memchr::memrchr(b'\n', &buf[scanned..]).is_some() {
                break;
            }
            scanned = buf.len();
            // `read_to_end` fills spare capacity without zeroing it first.
            let n = (&mut self.input)
                .take(self.read_size as u64)
                .read_to_end(&mut buf)
                .with_context(|| format!("cannot read {} after line {}", self.source, self.next_line))?;
            if n == 0 {
                self.eof = true;
            }
        }
        let cut = if self.eof { buf.len() } else { memchr::memrchr(b'\n', &buf).map_or(buf.len(), |i| i + 1) };
        self.carry.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
        if buf.is_empty() {
            return Ok(None);
        }
        if buf.len() >= Span::LIMIT {
            return Err(
                HybridError::Usage(format!("{}: line {} is larger than 2 GiB", self.source, self.next_line)).into()
            );
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &buf) {
            lines.push((start as u32, end as u32 + 1));
            start = end + 1;
        }
        if start < buf.len() {
            lines.push((start as u32, buf.len() as u32));
        }
        let first_line = self.next_line;
        self.next_line += lines.len();
        Ok(Some(Chunk { first_line, data: buf, lines }))
    }
}

/// Bytes asked of the input per read: a batch in one `read` (64 KiB reads cost about a fifth
/// more system time for the same copy).
const READ_SIZE: usize = BATCH_BYTES;

thread_local! {
    /// The working memory of each pool thread, kept across batches.
    static LINE_WORK: RefCell<LineWork> = RefCell::default();
}

/// Labels every pair of `input` into `output` (see the module contract). With more than one
/// job, a reader thread reads the next chunk while the pool labels the current one; with one
/// job everything runs on the calling thread.
pub fn run<R: Read + Send, W: Write>(input: R, mut output: W, opts: &PairsOptions) -> Result<PairsSummary> {
    if opts.jobs == 0 {
        return Err(HybridError::Usage("--jobs must be at least 1".into()).into());
    }
    let mut reader = ChunkReader {
        input,
        carry: Vec::new(),
        next_line: 1,
        eof: false,
        source: opts.source.clone(),
        batch: BATCH_BYTES,
        read_size: READ_SIZE,
    };
    let mut summary = PairsSummary::default();
    if opts.jobs == 1 {
        let mut spare = None;
        let mut work = LineWork::default();
        let mut group = GroupOut::default();
        while let Some(chunk) = reader.next(spare.take())? {
            group.out.clear();
            group.written = 0;
            group.bad.clear();
            label_group(&chunk.data, &chunk.lines, 0, &mut work, &mut group);
            write_group(&group, chunk.first_line, &mut output, opts, &mut summary)?;
            spare = Some(chunk);
        }
    } else {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.jobs)
            .thread_name(|i| format!("label-{i}"))
            .build()
            .context("cannot start the labelling threads")?;
        // Batches in flight (read, being labelled, or waiting to be written): this bounds memory.
        let in_flight = 4 * opts.jobs;
        std::thread::scope(|scope| -> Result<()> {
            let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Result<(Chunk, GroupOut)>)>();
            let (back_tx, back_rx) = std::sync::mpsc::channel::<Option<Chunk>>();
            for _ in 0..in_flight {
                let _ = back_tx.send(None);
            }
            let pool = &pool;
            // The reader thread reads batches and hands each to the pool whole; the labelled
            // batches come back in any order and are written in input order below.
            scope.spawn(move || {
                let mut seq = 0;
                while let Ok(spare) = back_rx.recv() {
                    match reader.next(spare) {
                        Ok(Some(chunk)) => {
                            let done = done_tx.clone();
                            pool.spawn(move || {
                                let mut g = GroupOut::default();
                                LINE_WORK.with_borrow_mut(|w| label_group(&chunk.data, &chunk.lines, 0, w, &mut g));
                                let _ = done.send((seq, Ok((chunk, g))));
                            });
                            seq += 1;
                        }
                        Ok(None) => return,
                        Err(e) => {
                            let _ = done_tx.send((seq, Err(e)));
                            return;
                        }
                    }
                }
            });
            let mut waiting = std::collections::BTreeMap::new();
            let mut next = 0;
            for (seq, batch) in done_rx {
                waiting.insert(seq, batch);
                while let Some(batch) = waiting.remove(&next) {
                    let (chunk, g) = batch?;
                    write_group(&g, chunk.first_line, &mut output, opts, &mut summary)?;
                    let _ = back_tx.send(Some(chunk));
                    next += 1;
                }
            }
            Ok(())
        })?;
    }
    output.flush().context("cannot write the labels")?;
    Ok(summary)
}

/// Writes a group's output in order, stopping at its first malformed line unless `skip_bad`.
fn write_group<W: Write>(
    g: &GroupOut,
    first_line: usize,
    output: &mut W,
    opts: &PairsOptions,
    summary: &mut PairsSummary,
) -> Result<()> {
    if let (false, Some((k, at, reason))) = (opts.skip_bad, g.bad.first()) {
        output.write_all(&g.out[..*at]).context("cannot write the labels")?;
        output.flush().context("cannot write the labels")?;
        return Err(HybridError::Usage(format!(
            "{}: line {}: not a {{\"id\", \"candidate\", \"final\"}} record: {reason} (use --skip-bad to skip such lines)",
            opts.source,
            first_line + k
        ))
        .into());
    }
    output.write_all(&g.out).context("cannot write the labels")?;
    summary.written += g.written;
    for (k, _, _) in &g.bad {
        summary.skipped += 1;
        if summary.skipped_lines.len() < 20 {
            summary.skipped_lines.push(first_line + k);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(skip_bad: bool) -> PairsOptions {
        PairsOptions { jobs: 2, skip_bad, source: "test".into() }
    }

    #[test]
    fn writes_in_order_and_reports_bad_lines() {
        let input = b"{\"id\":\"a\",\"candidate\":\"\",\"final\":\"\"}\n\n{\"id\":2,\"candidate\":\"\",\"final\":\"x\"}\nnope\n";
        let mut out = Vec::new();
        let err = run(&input[..], &mut out, &opts(false)).unwrap_err();
        assert!(format!("{err:#}").contains("line 4"), "{err:#}");
        assert_eq!(crate::error::exit_code(&err), 2);
        let mut out = Vec::new();
        let s = run(&input[..], &mut out, &opts(true)).unwrap();
        assert_eq!((s.written, s.skipped, s.skipped_lines.clone()), (2, 1, vec![4]));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "{\"id\":\"a\",\"jaccard\":1.0,\"ratio\":1.0,\"score\":1.0}\n{\"id\":2,\"jaccard\":1.0,\"ratio\":1.0,\"score\":1.0}\n");
    }

    #[test]
    fn chunks_hold_whole_lines_and_count_them() {
        let mut text = Vec::new();
        for i in 0..500 {
            text.extend_from_slice(format!("line {i} {}\n", "x".repeat(i % 37)).as_bytes());
        }
        text.extend_from_slice(b"last without newline");
        for (batch, read_size) in [(1, 1), (100, 7), (1000, 4096), (1 << 20, 1 << 20)] {
            let mut r = ChunkReader {
                input: &text[..],
                carry: Vec::new(),
                next_line: 1,
                eof: false,
                source: "t".into(),
                batch,
                read_size,
            };
            let mut all = Vec::new();
            let mut expect_line = 1;
            while let Some(c) = r.next(None).unwrap() {
                assert_eq!(c.lines.len(), c.data.split_inclusive(|&b| b == b'\n').count());
                assert_eq!(c.first_line, expect_line);
                expect_line += c.data.split_inclusive(|&b| b == b'\n').count();
                assert!(c.data.ends_with(b"\n") || c.data.ends_with(b"newline"));
                all.extend_from_slice(&c.data);
            }
            assert_eq!(all, text);
            assert_eq!(expect_line, 502);
        }
    }

    /// A diff equal to the other one byte for byte is not read again; one that only starts like
    /// it (or says the same in another escaping) is.
    #[test]
    fn equal_diffs_are_read_once_and_prefixes_in_full() {
        let d = r#"--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-x\n+\\\"y\\\"\n"#;
        let longer = format!(r#"{d}@@ -9 +9 @@\n-z\n+w\n"#);
        let slashed = d.replace("a/f", r"a\/f").replace("b/f", r"b\/f");
        let label = |c: &str, f: &str, final_first: bool| {
            let line = if final_first {
                format!(r#"{{"final":"{f}","id":1,"candidate":"{c}"}}"#)
            } else {
                format!(r#"{{"id":1,"candidate":"{c}","final":"{f}"}}"#)
            };
            let mut out = Vec::new();
            run(line.as_bytes(), &mut out, &opts(false)).unwrap();
            String::from_utf8(out).unwrap()
        };
        let ones = "{\"id\":1,\"jaccard\":1.0,\"ratio\":1.0,\"score\":1.0}\n";
        for final_first in [false, true] {
            assert_eq!(label(d, d, final_first), ones);
            assert_eq!(label(d, &slashed, final_first), ones);
            let want = "{\"id\":1,\"jaccard\":0.5,\"ratio\":0.6666666666666666,\"score\":0.5833333333333333}\n";
            assert_eq!(label(d, &longer, final_first), want);
            assert_eq!(label(&longer, d, final_first), want);
        }
    }

    #[test]
    fn rejects_bad_ids_and_types() {
        for bad in [
            &b"{\"id\":null,\"candidate\":\"\",\"final\":\"\"}"[..],
            b"{\"id\":1,\"candidate\":3,\"final\":\"\"}",
            b"{\"candidate\":\"\",\"final\":\"\"}",
            b"[1,2]",
            b"\xff\xfe",
        ] {
            let mut out = Vec::new();
            assert!(run(bad, &mut out, &opts(false)).is_err());
        }
    }
}
