//! `git hybrid label --pairs`: labels for a JSONL stream of diff pairs, computed in parallel.
//!
//! Contract: every non-blank input line is a JSON object `{"id", "candidate", "final"}` (`id` a
//! string or number, echoed back verbatim; `candidate` and `final` diff texts; other keys are
//! ignored). For each, one line `{"id","jaccard","ratio","score"}` is written, in input order.
//! Input is read in batches of whole lines of about [`BATCH_BYTES`]; each batch is labelled on
//! a rayon pool of `jobs` threads and written before the next one is labelled, so memory stays
//! bounded by a few batches (with more than one job, the next batch is read meanwhile). A malformed line is a [`HybridError::Usage`] naming its
//! line number (results of the lines before it are already written); with `skip_bad` it is
//! skipped and counted instead. Blank lines are ignored.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::HybridError;

/// Input bytes read per batch (a batch holds whole lines; a single longer line is read whole).
pub const BATCH_BYTES: usize = 8 << 20;

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

/// An input record; the diffs stay raw JSON and are read by [`super::score_json`].
#[derive(Deserialize)]
struct PairIn<'a> {
    id: serde_json::Value,
    #[serde(borrow)]
    candidate: &'a RawValue,
    #[serde(borrow, rename = "final")]
    final_diff: &'a RawValue,
}

/// The body of a JSON string literal, or `None` for any other JSON value.
fn string_body(raw: &RawValue) -> Option<&str> {
    let s = raw.get();
    (s.len() >= 2 && s.starts_with('"') && s.ends_with('"')).then(|| &s[1..s.len() - 1])
}

#[derive(Serialize)]
struct PairOut<'a> {
    id: &'a serde_json::Value,
    jaccard: f64,
    ratio: f64,
    score: f64,
}

/// One line's outcome: the output line, nothing (blank), or why it is malformed.
enum Outcome {
    Line(Vec<u8>),
    Blank,
    Bad(String),
}

fn label_line(raw: &[u8]) -> Outcome {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Outcome::Blank;
    }
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t,
        Err(e) => return Outcome::Bad(format!("not UTF-8: {e}")),
    };
    let pair: PairIn = match serde_json::from_str(text) {
        Ok(p) => p,
        Err(e) => return Outcome::Bad(e.to_string()),
    };
    if !(pair.id.is_string() || pair.id.is_number()) {
        return Outcome::Bad("\"id\" must be a string or a number".into());
    }
    let (Some(candidate), Some(final_diff)) = (string_body(pair.candidate), string_body(pair.final_diff)) else {
        return Outcome::Bad("\"candidate\" and \"final\" must be strings".into());
    };
    let labels = super::score_json(candidate, final_diff);
    let out = PairOut { id: &pair.id, jaccard: labels.jaccard, ratio: labels.ratio, score: labels.score };
    match serde_json::to_vec(&out) {
        Ok(mut v) => {
            v.push(b'\n');
            Outcome::Line(v)
        }
        Err(e) => Outcome::Bad(e.to_string()),
    }
}

/// A run of whole input lines: `data` ends after a `\n` (or at the end of the input).
struct Chunk {
    /// Line number of the first line in `data`.
    first_line: usize,
    data: Vec<u8>,
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
    fn next(&mut self, mut buf: Vec<u8>) -> Result<Option<Chunk>> {
        if self.eof && self.carry.is_empty() {
            return Ok(None);
        }
        buf.clear();
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
        let first_line = self.next_line;
        self.next_line += memchr::memchr_iter(b'\n', &buf).count() + usize::from(!buf.ends_with(b"\n"));
        Ok(Some(Chunk { first_line, data: buf }))
    }
}

/// Bytes asked of the input per read.
const READ_SIZE: usize = 1 << 20;

/// Labels every pair of `input` into `output` (see the module contract). With more than one
/// job, a reader thread reads the next chunk while the pool labels the current one.
pub fn run<R: Read + Send, W: Write>(input: R, mut output: W, opts: &PairsOptions) -> Result<PairsSummary> {
    if opts.jobs == 0 {
        return Err(HybridError::Usage("--jobs must be at least 1".into()).into());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs)
        .thread_name(|i| format!("label-{i}"))
        .build()
        .context("cannot start the labelling threads")?;
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
        let mut spare = Vec::new();
        while let Some(chunk) = reader.next(std::mem::take(&mut spare))? {
            label_chunk(&pool, &chunk, &mut output, opts, &mut summary)?;
            spare = chunk.data;
        }
    } else {
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Chunk>>(1);
            let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
            scope.spawn(move || loop {
                let buf = back_rx.try_recv().unwrap_or_default();
                match reader.next(buf) {
                    Ok(Some(c)) => {
                        if tx.send(Ok(c)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            });
            for chunk in rx {
                let chunk = chunk?;
                label_chunk(&pool, &chunk, &mut output, opts, &mut summary)?;
                let _ = back_tx.send(chunk.data);
            }
            Ok(())
        })?;
    }
    output.flush().context("cannot write the labels")?;
    Ok(summary)
}

/// Labels one chunk on the pool and writes its results in order.
fn label_chunk<W: Write>(
    pool: &rayon::ThreadPool,
    chunk: &Chunk,
    output: &mut W,
    opts: &PairsOptions,
    summary: &mut PairsSummary,
) -> Result<()> {
    let data = &chunk.data;
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', data) {
        lines.push(&data[start..=end]);
        start = end + 1;
    }
    if start < data.len() {
        lines.push(&data[start..]);
    }
    let results: Vec<Outcome> = pool.install(|| lines.par_iter().with_min_len(8).map(|raw| label_line(raw)).collect());
    for (i, outcome) in results.into_iter().enumerate() {
        let no = chunk.first_line + i;
        match outcome {
            Outcome::Line(v) => {
                output.write_all(&v).context("cannot write the labels")?;
                summary.written += 1;
            }
            Outcome::Blank => {}
            Outcome::Bad(_) if opts.skip_bad => {
                summary.skipped += 1;
                if summary.skipped_lines.len() < 20 {
                    summary.skipped_lines.push(no);
                }
            }
            Outcome::Bad(reason) => {
                output.flush().context("cannot write the labels")?;
                return Err(HybridError::Usage(format!(
                    "{}: line {no}: not a {{\"id\", \"candidate\", \"final\"}} record: {reason} (use --skip-bad to skip such lines)",
                    opts.source
                ))
                .into());
            }
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
            while let Some(c) = r.next(Vec::new()).unwrap() {
                assert_eq!(c.first_line, expect_line);
                expect_line += c.data.split_inclusive(|&b| b == b'\n').count();
                assert!(c.data.ends_with(b"\n") || c.data.ends_with(b"newline"));
                all.extend_from_slice(&c.data);
            }
            assert_eq!(all, text);
            assert_eq!(expect_line, 502);
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
