//! The record reader of `label --pairs` against JSON crates, side by side in one run (issue 15).
//!
//! `cargo run --release --example labels_json -- PAIRS.jsonl [ROUNDS]`, where the pairs file comes
//! from `python3 benches/labels.py --write-pairs PAIRS.jsonl` (20,000 pairs, about 265 MB).
//!
//! Every way reads each line of the file (already in memory) into what the labeller needs: the
//! record validated, and the lines of both diffs. The hand-written reader
//! (`src/labels/jsonrec.rs` + `jsonstr.rs`) validates and splits the diff literals in one pass
//! without decoding them; a crate decodes the record into its strings (`Cow<str>`: borrowed when
//! a literal holds no escape), then the decoded diffs are split on `\n` (one trailing `\r` off, as
//! the labeller does). The "records only" rows leave out that split (the crate alone), and the
//! hand-written reader's "validate only" row skips the literals without splitting them. Each way
//! runs `ROUNDS` times (default 5), the ways interleaved; the best round counts. Prints MB/s and
//! each way's speed relative to the hand-written reader. Checks that all ways see the same number
//! of records and diff lines.

use std::borrow::Cow;
use std::time::Instant;

use git_hybrid::labels::diffparse::LineSource;
use git_hybrid::labels::jsonrec::read_record;
use git_hybrid::labels::jsonstr::{skip_string, JsonStrSource};
use serde::Deserialize;

#[derive(Deserialize)]
struct Rec<'a> {
    #[allow(dead_code)]
    id: serde_json::Value,
    #[serde(borrow)]
    candidate: Cow<'a, str>,
    #[serde(borrow, rename = "final")]
    final_diff: Cow<'a, str>,
}

/// Lines of a decoded diff, as the labeller splits them (summed lengths keep the work alive).
fn split(diff: &str) -> (usize, usize) {
    let b = diff.as_bytes();
    let (mut lines, mut bytes, mut start) = (0, 0, 0);
    for end in memchr::memchr_iter(b'\n', b).chain([b.len()]) {
        let line = &b[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        lines += 1;
        bytes += line.len();
        start = end + 1;
    }
    (lines, bytes)
}

/// (records, diff lines, bytes of lines) read by one way over every line.
type Count = (usize, usize, usize);

fn hand(lines: &[&[u8]]) -> Count {
    let mut decoded = Vec::new();
    let (mut recs, mut n, mut bytes) = (0, 0, 0);
    for line in lines {
        decoded.clear();
        read_record(line, |_, at| {
            let mut src = JsonStrSource::new(line, at, &mut decoded);
            while let Some(l) = src.next_line() {
                n += 1;
                let span = src.key(l);
                bytes += src.resolve(span).len();
            }
            src.finish()
        })
        .expect("valid record");
        recs += 1;
    }
    (recs, n, bytes)
}

fn hand_validate(lines: &[&[u8]]) -> Count {
    let mut recs = 0;
    for line in lines {
        read_record(line, |_, at| Ok(skip_string(line, at)?.0)).expect("valid record");
        recs += 1;
    }
    (recs, 0, 0)
}

fn count(rec: &Rec, with_lines: bool, c: &mut Count) {
    c.0 += 1;
    if with_lines {
        for d in [&rec.candidate, &rec.final_diff] {
            let (l, b) = split(d);
            c.1 += l;
            c.2 += b;
        }
    }
}

fn serde_way(lines: &[&[u8]], with_lines: bool) -> Count {
    let mut c = (0, 0, 0);
    for line in lines {
        let rec: Rec = serde_json::from_slice(line).expect("valid record");
        count(&rec, with_lines, &mut c);
    }
    c
}

fn simd_way(lines: &[&[u8]], with_lines: bool) -> Count {
    let mut c = (0, 0, 0);
    // simd-json decodes in place: each line is copied into a scratch buffer first (as the
    // labeller would have to, its batches being shared).
    let mut scratch = Vec::new();
    let mut buffers = simd_json::Buffers::default();
    for line in lines {
        scratch.clear();
        scratch.extend_from_slice(line);
        let rec: Rec = simd_json::serde::from_slice_with_buffers(&mut scratch, &mut buffers).expect("valid record");
        count(&rec, with_lines, &mut c);
    }
    c
}

fn sonic_way(lines: &[&[u8]], with_lines: bool) -> Count {
    let mut c = (0, 0, 0);
    for line in lines {
        let rec: Rec = sonic_rs::from_slice(line).expect("valid record");
        count(&rec, with_lines, &mut c);
    }
    c
}

type Way = (&'static str, fn(&[&[u8]]) -> Count);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: labels_json PAIRS.jsonl [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    let data = std::fs::read(path).expect("read the pairs file");
    let lines: Vec<&[u8]> = data.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
    let mb = data.len() as f64 / 1e6;
    let ways: [Way; 8] = [
        ("hand-written (jsonrec + jsonstr)", hand),
        ("serde_json + split", |l| serde_way(l, true)),
        ("simd-json + split", |l| simd_way(l, true)),
        ("sonic-rs + split", |l| sonic_way(l, true)),
        ("hand-written, validate only", hand_validate),
        ("serde_json, records only", |l| serde_way(l, false)),
        ("simd-json, records only", |l| simd_way(l, false)),
        ("sonic-rs, records only", |l| sonic_way(l, false)),
    ];
    let mut best = [f64::INFINITY; 8];
    let mut counts = [(0, 0, 0); 8];
    for _ in 0..rounds {
        for (k, (_, way)) in ways.iter().enumerate() {
            let t = Instant::now();
            counts[k] = std::hint::black_box(way(std::hint::black_box(&lines)));
            best[k] = best[k].min(t.elapsed().as_secs_f64());
        }
    }
    println!("{} records, {:.1} MB, best of {rounds} rounds", lines.len(), mb);
    for (k, (name, _)) in ways.iter().enumerate() {
        println!(
            "{name:36} {:8.3}s {:8.0} MB/s  {:5.2}x the hand-written reader's time",
            best[k],
            mb / best[k],
            best[k] / best[0]
        );
    }
    // The same records and the same diff lines for every way that splits.
    for k in 0..8 {
        assert_eq!(counts[k].0, lines.len(), "{}", ways[k].0);
    }
    for k in 1..4 {
        assert_eq!(counts[k].1, counts[0].1, "diff lines of {}", ways[k].0);
    }
    println!("all ways read {} records; the splitting ways {} diff lines", lines.len(), counts[0].1);
}
