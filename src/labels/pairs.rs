//! `git hybrid label --pairs`: labels for a JSONL stream of diff pairs, computed in parallel.
//!
//! Contract: every non-blank input line is a JSON object `{"id", "candidate", "final"}` (`id` a
//! string or number, echoed back verbatim; `candidate` and `final` diff texts; other keys are
//! ignored). For each, one line `{"id","jaccard","ratio","score"}` is written, in input order.
//! Lines are read in bounded batches (at most [`BATCH_LINES`] lines or [`BATCH_BYTES`] bytes),
//! each batch is labelled on a rayon pool of `jobs` threads and written before the next is read,
//! so memory stays bounded by the batch. A malformed line is a [`HybridError::Usage`] naming its
//! line number (results of the lines before it are already written); with `skip_bad` it is
//! skipped and counted instead. Blank lines are ignored.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::HybridError;

/// Most lines labelled per batch.
pub const BATCH_LINES: usize = 4096;
/// Most input bytes held per batch (a single longer line is still read whole).
pub const BATCH_BYTES: usize = 64 << 20;

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

/// Labels every pair of `input` into `output` (see the module contract).
pub fn run<R: BufRead, W: Write>(mut input: R, mut output: W, opts: &PairsOptions) -> Result<PairsSummary> {
    if opts.jobs == 0 {
        return Err(HybridError::Usage("--jobs must be at least 1".into()).into());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs)
        .thread_name(|i| format!("label-{i}"))
        .build()
        .context("cannot start the labelling threads")?;
    let mut summary = PairsSummary::default();
    let mut line_no = 0usize;
    let mut eof = false;
    while !eof {
        let mut batch: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut bytes = 0usize;
        while batch.len() < BATCH_LINES && bytes < BATCH_BYTES {
            let mut buf = Vec::new();
            let n = input
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("cannot read {} after line {line_no}", opts.source))?;
            if n == 0 {
                eof = true;
                break;
            }
            line_no += 1;
            bytes += n;
            batch.push((line_no, buf));
        }
        let results: Vec<Outcome> = pool.install(|| batch.par_iter().map(|(_, raw)| label_line(raw)).collect());
        for ((no, _), outcome) in batch.iter().zip(results) {
            match outcome {
                Outcome::Line(v) => {
                    output.write_all(&v).context("cannot write the labels")?;
                    summary.written += 1;
                }
                Outcome::Blank => {}
                Outcome::Bad(reason) if opts.skip_bad => {
                    summary.skipped += 1;
                    if summary.skipped_lines.len() < 20 {
                        summary.skipped_lines.push(*no);
                    }
                    let _ = reason;
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
    }
    output.flush().context("cannot write the labels")?;
    Ok(summary)
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
