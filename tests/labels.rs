//! `git hybrid label`: parity of `--pairs` with Python's difflib (generated and real diffs, edge
//! cases), malformed input, and labelling the attempts of a landed task in the ledger.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{assert_code, assert_ok, stderr, stdout, TestRepo};
use serde_json::{json, Value};

/// The Python reference (same definition, Python's difflib).
fn reference_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join("labels_ref.py")
}

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
}

/// A hunk line: (kind, text) with kind ' ', '-' or '+'.
type Hunk = Vec<(char, String)>;

/// A generated diff: files with hunks.
#[derive(Clone)]
struct GenDiff {
    files: Vec<(String, String, Vec<Hunk>)>,
}

impl GenDiff {
    fn render(&self, crlf: bool) -> String {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        for (old, new, hunks) in &self.files {
            let a = if old == "/dev/null" { old.clone() } else { format!("a/{old}") };
            let b = if new == "/dev/null" { new.clone() } else { format!("b/{new}") };
            out.push_str(&format!("diff --git a/{old} b/{new}{nl}index 1111111..2222222 100644{nl}"));
            out.push_str(&format!("--- {a}{nl}+++ {b}{nl}"));
            for (h, lines) in hunks.iter().enumerate() {
                let o = lines.iter().filter(|(k, _)| *k != '+').count();
                let n = lines.iter().filter(|(k, _)| *k != '-').count();
                let start = h * 50 + 1;
                let side = |c: usize| if c == 1 { format!("{start}") } else { format!("{start},{c}") };
                out.push_str(&format!("@@ -{} +{} @@ fn context(){nl}", side(o), side(n)));
                for (k, t) in lines {
                    out.push(*k);
                    out.push_str(t);
                    out.push_str(nl);
                }
            }
        }
        out
    }
}

fn gen_line(rng: &mut Rng, vocab: usize) -> String {
    match rng.below(12) {
        0 => String::new(),
        1 => format!("-- removed dash {}", rng.below(vocab)),
        2 => format!("++ plus plus {}", rng.below(vocab)),
        3 => format!("\tindented\twith tabs {}", rng.below(vocab)),
        4 => format!("ünïcödé ✓ {}", rng.below(vocab)),
        _ => format!("line {} of code;", rng.below(vocab)),
    }
}

fn gen_diff(rng: &mut Rng, max_lines: usize, vocab: usize) -> GenDiff {
    let nfiles = 1 + rng.below(4);
    let mut files = Vec::new();
    for f in 0..nfiles {
        let path = format!("src/dir{}/file {}.rs", rng.below(3), f);
        let (old, new) = match rng.below(10) {
            0 => ("/dev/null".to_string(), path.clone()),
            1 => (path.clone(), "/dev/null".to_string()),
            2 => (format!("old/{path}"), path.clone()),
            _ => (path.clone(), path.clone()),
        };
        let mut hunks = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let len = rng.below(max_lines / nfiles + 1);
            let mut lines: Hunk = Vec::new();
            for _ in 0..len {
                let kind = if old == "/dev/null" {
                    '+'
                } else if new == "/dev/null" {
                    '-'
                } else {
                    [' ', '-', '+', '+', '-'][rng.below(5)]
                };
                lines.push((kind, gen_line(rng, vocab)));
            }
            if !lines.is_empty() {
                hunks.push(lines);
            }
        }
        files.push((old, new, hunks));
    }
    GenDiff { files }
}

/// A candidate close to `d`: some lines changed, dropped or added, hunks or files dropped.
fn perturb(rng: &mut Rng, d: &GenDiff, vocab: usize) -> GenDiff {
    let mut d = d.clone();
    if d.files.len() > 1 && rng.chance(20) {
        let i = rng.below(d.files.len());
        d.files.remove(i);
    }
    for (_, _, hunks) in d.files.iter_mut() {
        for lines in hunks.iter_mut() {
            let mut out = Vec::new();
            for (k, t) in lines.drain(..) {
                match rng.below(20) {
                    0 => {}
                    1 => out.push((k, gen_line(rng, vocab))),
                    2 => {
                        out.push((k, t));
                        out.push((if k == ' ' { '+' } else { k }, gen_line(rng, vocab)));
                    }
                    _ => out.push((k, t)),
                }
            }
            *lines = out;
        }
        hunks.retain(|h| !h.is_empty());
    }
    d
}

/// Hand-written edge cases: (name, candidate, final).
fn edge_cases() -> Vec<(String, String, String)> {
    let plain =
        "diff --git a/f.txt b/f.txt\nindex 1..2 100644\n--- a/f.txt\n+++ b/f.txt\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n d\n";
    let crlf = plain.replace('\n', "\r\n");
    let binary = "diff --git a/img.png b/img.png\nindex 1..2 100644\nBinary files a/img.png and b/img.png differ\n";
    let no_newline =
        "diff --git a/f.txt b/f.txt\n--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-old\n\\ No newline at end of file\n+old\n";
    let rename = "diff --git a/old.rs b/new.rs\nsimilarity index 90%\nrename from old.rs\nrename to new.rs\nindex 1..2 100644\n--- a/old.rs\n+++ b/new.rs\n@@ -1,2 +1,2 @@\n keep\n-x\n+y\n";
    let pure_rename = "diff --git a/old.rs b/new.rs\nsimilarity index 100%\nrename from old.rs\nrename to new.rs\n";
    let dash = "--- a/f\n+++ b/f\n@@ -1,3 +1,2 @@\n--- x\n+++ y\n keep\n-z\n";
    let deleted =
        "diff --git a/gone b/gone\ndeleted file mode 100644\n--- a/gone\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-one\n-two\n";
    let added = "diff --git a/new b/new\nnew file mode 100644\n--- /dev/null\n+++ b/new\n@@ -0,0 +1,2 @@\n+one\n+two\n";
    let tabbed = "--- a/p q\t2024-01-01 00:00\n+++ b/p q\t2024-01-02 00:00\n@@ -1 +1 @@\n-x\n+y\n";
    let truncated =
        "--- a/f\n+++ b/f\n@@ -1,10 +1,10 @@\n-x\ndiff --git a/g b/g\n--- a/g\n+++ b/g\n@@ -1 +1 @@\n-y\n+z\n";
    let garbage = "hello\n@@ nonsense @@\n-not in a hunk\n+also not\n@@ -1, +1 @@\n-x\n";
    let only_cr = "--- a/f\r\n+++ b/f\r\n@@ -1 +1 @@\r\n-x\r\r\n+x\r\n";
    let popular: String = {
        let mut s = String::from("--- a/big\n+++ b/big\n@@ -1,300 +1,300 @@\n");
        for i in 0..300 {
            s.push_str(if i % 7 == 0 { "-}\n" } else { "+}\n" });
        }
        s
    };
    let popular2 = popular.replacen("+}", "+{", 3);
    let mut cases = vec![
        ("empty-empty", "", ""),
        ("empty-plain", "", plain),
        ("plain-empty", plain, ""),
        ("plain-plain", plain, plain),
        ("binary-binary", binary, binary),
        ("binary-plain", binary, plain),
        ("no-newline", no_newline, plain),
        ("rename", rename, plain),
        ("pure-rename", pure_rename, rename),
        ("dash-lines", dash, plain),
        ("deleted", deleted, added),
        ("tabbed", tabbed, plain),
        ("truncated", truncated, plain),
        ("garbage", garbage, plain),
        ("only-cr", only_cr, plain),
        ("popular", popular.as_str(), popular2.as_str()),
    ]
    .into_iter()
    .map(|(n, a, b)| (n.to_string(), a.to_string(), b.to_string()))
    .collect::<Vec<_>>();
    cases.push(("crlf-vs-lf".into(), crlf.clone(), plain.to_string()));
    cases.push(("crlf-crlf".into(), crlf.clone(), crlf));
    cases
}

/// Writes pairs as JSONL.
fn write_pairs(path: &Path, pairs: &[(String, String, String)]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (id, c, fin) in pairs {
        writeln!(f, "{}", json!({"id": id, "candidate": c, "final": fin})).unwrap();
    }
}

fn parse_jsonl(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"))).collect()
}

/// Runs `label --pairs FILE` and the Python reference on the same file; asserts every value
/// agrees within 1e-12 and returns the number compared.
fn assert_parity(repo: &TestRepo, pairs: &[(String, String, String)], jobs: &str) -> usize {
    let file = repo.base().join(format!("pairs-{jobs}.jsonl"));
    write_pairs(&file, pairs);
    let out = repo.hybrid(&["label", "--pairs", file.to_str().unwrap(), "--jobs", jobs]);
    assert_ok(&out, &["label", "--pairs"]);
    let ours = parse_jsonl(&stdout(&out));
    // The same pairs as Python writes JSON (every non-ASCII character as a \uXXXX escape):
    // the labels must not depend on how the JSON strings are escaped.
    let ascii = repo.base().join(format!("pairs-{jobs}-ascii.jsonl"));
    let enc = Command::new("python3")
        .args(["-c", "import json,sys\nfor l in sys.stdin: print(json.dumps(json.loads(l)))"])
        .stdin(std::fs::File::open(&file).unwrap())
        .stdout(std::fs::File::create(&ascii).unwrap())
        .status()
        .unwrap();
    assert!(enc.success());
    let out = repo.hybrid(&["label", "--pairs", ascii.to_str().unwrap(), "--jobs", jobs]);
    assert_ok(&out, &["label", "--pairs", "ascii"]);
    assert_eq!(parse_jsonl(&stdout(&out)), ours, "labels depend on the JSON escaping");
    let py = Command::new("python3")
        .arg(reference_script())
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("python3 runs");
    assert!(py.status.success(), "python reference failed: {}", stderr(&py));
    let theirs = parse_jsonl(&String::from_utf8_lossy(&py.stdout));
    assert_eq!(ours.len(), pairs.len());
    assert_eq!(theirs.len(), pairs.len());
    for ((o, t), (id, _, _)) in ours.iter().zip(&theirs).zip(pairs) {
        assert_eq!(o["id"], json!(id), "output order");
        assert_eq!(o["id"], t["id"]);
        for k in ["jaccard", "ratio", "score"] {
            let (a, b) = (o[k].as_f64().unwrap(), t[k].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-12, "{id}: {k}: git-hybrid {a} vs difflib {b}");
        }
    }
    pairs.len()
}

#[test]
fn pairs_match_python_difflib_on_generated_and_edge_case_diffs() {
    let repo = TestRepo::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut pairs = edge_cases();
    for i in 0..400 {
        // Small vocabularies repeat keys; long diffs (>= 200 keys) trigger difflib's autojunk.
        let (max_lines, vocab) = match i % 4 {
            0 => (10, 5),
            1 => (60, 30),
            2 => (400, 12),
            _ => (900, 400),
        };
        let fin = gen_diff(&mut rng, max_lines, vocab);
        let cand = if rng.chance(15) { gen_diff(&mut rng, max_lines, vocab) } else { perturb(&mut rng, &fin, vocab) };
        let crlf = rng.chance(10);
        pairs.push((format!("gen-{i}"), cand.render(crlf), fin.render(false)));
    }
    // Make sure the autojunk path is really exercised: some finals hold >= 200 keys.
    let long = pairs.iter().filter(|p| p.2.matches("\n+").count() + p.2.matches("\n-").count() >= 200).count();
    assert!(long >= 20, "only {long} long diffs");
    assert_parity(&repo, &pairs, "2");
    assert_parity(&repo, &pairs[..50], "1");
}

#[test]
fn pairs_match_python_difflib_on_a_very_large_diff() {
    let repo = TestRepo::new();
    let mut rng = Rng(42);
    let fin = gen_diff(&mut rng, 40_000, 3000);
    let cand = perturb(&mut rng, &fin, 3000);
    let pairs = vec![("big".to_string(), cand.render(false), fin.render(false))];
    assert_parity(&repo, &pairs, "2");
}

/// Diffs of a real history: text edits, CRLF files, no trailing newline, renames, binaries,
/// deletions; pairs of commit diffs and commit ranges.
#[test]
fn pairs_match_python_difflib_on_real_git_diffs() {
    let repo = TestRepo::new();
    let mut rng = Rng(7);
    let mut files: Vec<(String, Vec<String>)> = (0..6)
        .map(|i| (format!("src/m{i}.rs"), (0..40).map(|l| format!("fn f{l}() {{ {} }}", l % 9)).collect()))
        .collect();
    let mut shas = vec![repo.rev("HEAD")];
    for c in 0..40 {
        let fi = rng.below(files.len());
        {
            let (_, lines) = &mut files[fi];
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(lines.len() + 1);
                match rng.below(3) {
                    0 if !lines.is_empty() => {
                        lines.remove(at.min(lines.len() - 1));
                    }
                    1 => lines.insert(at, format!("    let v{} = {};", rng.below(50), rng.below(5))),
                    _ => {
                        if let Some(l) = lines.get_mut(at) {
                            *l = format!("// changed {}", rng.below(20));
                        }
                    }
                }
            }
        }
        let (path, lines) = &files[fi];
        let eol = if fi == 1 { "\r\n" } else { "\n" };
        let mut text = lines.join(eol);
        if fi != 2 {
            text.push_str(eol); // m2.rs never ends in a newline
        }
        repo.write(path, &text);
        if c % 10 == 3 {
            let to = format!("moved/r{c}.rs");
            repo.git(&["add", "-A"]);
            std::fs::create_dir_all(repo.root.join("moved")).unwrap();
            repo.git(&["mv", path, &to]);
            files[fi].0 = to;
        }
        if c % 13 == 5 {
            std::fs::write(repo.root.join(format!("bin{c}.dat")), [0u8, 159, 146, 150, c as u8, 0, 1]).unwrap();
        }
        if c == 30 {
            let (gone, _) = files.remove(0);
            std::fs::remove_file(repo.root.join(gone)).unwrap();
        }
        shas.push(repo.commit_all(&format!("commit {c}")));
    }
    let diff = |args: &[&str]| {
        let out = repo.git_out(&repo.root, args);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let commit_diffs: Vec<String> = shas[1..].iter().map(|s| diff(&["show", "--format=", s])).collect();
    assert!(commit_diffs.iter().any(|d| d.contains("rename from")), "history has a rename");
    assert!(commit_diffs.iter().any(|d| d.contains("Binary files")), "history has a binary file");
    assert!(commit_diffs.iter().any(|d| d.contains("\\ No newline at end of file")));
    assert!(commit_diffs.iter().any(|d| d.contains("\r\n")));
    let mut pairs = Vec::new();
    for i in 0..commit_diffs.len() {
        let j = rng.below(commit_diffs.len());
        pairs.push((format!("c{i}-c{j}"), commit_diffs[i].clone(), commit_diffs[j].clone()));
        pairs.push((format!("c{i}-self"), commit_diffs[i].clone(), commit_diffs[i].clone()));
        let (a, b) = (rng.below(shas.len()), rng.below(shas.len()));
        let range = diff(&["diff", &shas[a.min(b)], &shas[a.max(b)]]);
        pairs.push((format!("r{a}-{b}-vs-c{i}"), range, commit_diffs[i].clone()));
    }
    // The project's own history, when the source tree is a git checkout.
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let log = repo.git_out(src, &["log", "-n", "30", "--format=", "-p"]);
    if log.status.success() {
        let text = String::from_utf8_lossy(&log.stdout).into_owned();
        let chunks: Vec<&str> = text.split("\ndiff --git ").collect();
        for (i, w) in chunks.windows(2).enumerate().take(200) {
            pairs.push((format!("self-{i}"), format!("diff --git {}", w[0]), format!("diff --git {}", w[1])));
        }
    }
    assert_parity(&repo, &pairs, "2");
}

#[test]
fn pairs_read_stdin_and_report_malformed_lines() {
    let repo = TestRepo::new();
    let good = json!({"id": "a", "candidate": "", "final": ""}).to_string();
    let input = format!("{good}\n\n{{\"id\": \"b\", \"candidate\": 1}}\n{good}\nnot json\n");
    let run = |args: &[&str]| {
        let mut cmd = repo.hybrid_cmd(&repo.root, args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&["label", "--pairs", "-"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("line 3"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));

    let out = run(&["label", "--pairs", "-", "--skip-bad", "--jobs", "3"]);
    assert_ok(&out, &["label", "--pairs", "-", "--skip-bad"]);
    let lines = parse_jsonl(&stdout(&out));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], json!({"id": "a", "jaccard": 1.0, "ratio": 1.0, "score": 1.0}));
    assert!(stderr(&out).contains("skipped 2 malformed line(s): 3, 5"), "{}", stderr(&out));

    let out = repo.hybrid(&["label", "--pairs", "/nonexistent/pairs.jsonl"]);
    assert_code(&out, 2);
    let out = repo.hybrid(&["label", "--pairs", "-", "--jobs", "0"]);
    assert_code(&out, 2);
}

// ---------------------------------------------------------------------------------------------
// Labelling landed tasks from the ledger.

fn write_record(repo: &TestRepo, rec: Value) {
    let id = rec["id"].as_str().unwrap().to_string();
    let attempt = rec["attempt"].as_u64().unwrap();
    let path = repo.root.join(".git/hybrid/ledger").join(&id).join(format!("{attempt}.json"));
    common::write_file(&path, &serde_json::to_string_pretty(&rec).unwrap());
}

fn record(id: &str, attempt: u32, state: &str, base: &str) -> Value {
    let branch = if attempt == 1 { format!("hybrid/{id}") } else { format!("hybrid/{id}@{attempt}") };
    json!({
        "id": id, "attempt": attempt, "state": state, "branch": branch, "worktree": null,
        "base": base, "target": "main", "title": null, "merge_sha": null, "merge_base": null,
        "tip": null, "landed_at": null, "created": "2026-01-01T00:00:00Z",
        "updated": "2026-01-01T00:00:00Z", "run_dir": null, "agent": null, "failure": null,
        "conflicts": [], "runs": 1, "labels": null
    })
}

/// A landed task t1 whose attempt 1 caught up with main before landing, a rival attempt 2 on
/// its branch, attempt 3 reachable only through refs/hybrid/tips, attempt 4 with no tip at
/// all, and an unlanded task t2.
struct Landed {
    repo: TestRepo,
    base: String,
    squash: String,
    tip2: String,
}

fn landed_fixture() -> Landed {
    let repo = TestRepo::new();
    let body: String = (0..30).map(|i| format!("line {i}\n")).collect();
    repo.write("a.txt", &body);
    repo.write("b.txt", "b\n");
    let base = repo.commit_all("base");

    // Attempt 1: edits a.txt, then merges main (which moved on) in: a catch-up.
    repo.git(&["checkout", "-q", "-b", "hybrid/t1"]);
    repo.write("a.txt", &body.replace("line 3\n", "line three\n").replace("line 20\n", "line 20\nnew line\n"));
    repo.write("c.txt", "new file\n");
    repo.commit_all("t1 work");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("b.txt", "b changed by another task\n");
    let other = repo.commit_all("another task landed");
    repo.git(&["checkout", "-q", "hybrid/t1"]);
    repo.git(&["merge", "-q", "--no-edit", "main"]);
    let tip1 = repo.rev("HEAD");
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["merge", "-q", "--squash", "hybrid/t1"]);
    repo.git(&["commit", "-q", "-m", "t1: the task\n\nHybrid-Task: t1"]);
    let squash = repo.rev("HEAD");
    repo.git(&["branch", "-D", "-q", "hybrid/t1"]); // landed: the branch is gone, the ledger has the tip

    // Attempt 2: a different take from the same base, branch still there.
    repo.git(&["checkout", "-q", "-b", "hybrid/t1@2", &base]);
    repo.write("a.txt", &body.replace("line 3\n", "line 3 (edited)\n"));
    repo.write("c.txt", "new file\n");
    let tip2 = repo.commit_all("t1 attempt 2");
    // Attempt 3: kept only as refs/hybrid/tips/t1@3.
    repo.git(&["checkout", "-q", "-b", "scratch", &base]);
    repo.write("a.txt", &body.replace("line 20\n", "line 20\nnew line\n"));
    let tip3 = repo.commit_all("t1 attempt 3");
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["branch", "-D", "-q", "scratch"]);
    repo.git(&["update-ref", "refs/hybrid/tips/t1@3", &tip3]);

    let mut r1 = record("t1", 1, "landed", &base);
    r1["merge_sha"] = json!(squash);
    r1["merge_base"] = json!(other);
    r1["tip"] = json!(tip1);
    r1["landed_at"] = json!("2026-01-01T01:00:00Z");
    write_record(&repo, r1);
    write_record(&repo, record("t1", 2, "candidate", &base));
    write_record(&repo, record("t1", 3, "candidate", &base));
    write_record(&repo, record("t1", 4, "failed", &base));
    write_record(&repo, record("t2", 1, "failed", &base));
    Landed { repo, base, squash, tip2 }
}

#[test]
fn label_scores_every_attempt_of_a_landed_task_and_stores_it() {
    let Landed { repo, base, squash, tip2 } = landed_fixture();
    let before = repo.refs_snapshot();
    let report = repo.hybrid_json(&["label", "--jobs", "2"]);
    let labeled = report["labeled"].as_array().unwrap();
    assert_eq!(labeled.len(), 3, "{report:#}");
    let by_attempt = |n: u64| labeled.iter().find(|l| l["attempt"] == n).unwrap().clone();

    // The landed attempt's own patch (after catch-up) is exactly the squash: score 1.
    let l1 = by_attempt(1);
    assert_eq!((l1["jaccard"].as_f64(), l1["ratio"].as_f64(), l1["score"].as_f64()), (Some(1.0), Some(1.0), Some(1.0)));
    assert_eq!(l1["tip_source"], "ledger");
    assert_eq!(l1["merge_sha"], json!(squash));

    // Attempt 2 agrees with Python's difflib on the diffs git itself prints.
    let l2 = by_attempt(2);
    assert_eq!(l2["tip_source"], "branch");
    assert_eq!(l2["from"], json!(base));
    let cand = repo.git(&["diff", &base, &tip2]) + "\n";
    let fin = repo.git(&["show", "--format=", &squash]) + "\n";
    let script = format!(
        "import json,sys; sys.path.insert(0, {dir:?}); import labels_ref as r\nd=json.load(sys.stdin)\nprint(json.dumps(r.labels(d['c'], d['f'])))",
        dir = reference_script().parent().unwrap()
    );
    let mut py =
        Command::new("python3").args(["-c", &script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    py.stdin.take().unwrap().write_all(json!({"c": cand, "f": fin}).to_string().as_bytes()).unwrap();
    let py = py.wait_with_output().unwrap();
    let want: Vec<f64> = serde_json::from_slice(&py.stdout).unwrap();
    assert!(want[2] < 1.0 && want[2] > 0.0, "{want:?}");
    for (k, w) in ["jaccard", "ratio", "score"].iter().zip(&want) {
        assert!((l2[*k].as_f64().unwrap() - w).abs() <= 1e-12, "{k}: {} vs {w}", l2[*k]);
    }

    assert_eq!(by_attempt(3)["tip_source"], "tips-ref");
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["attempt"], 4);

    // Stored in the ledger; nothing else moved.
    let stored: Value =
        serde_json::from_slice(&std::fs::read(repo.root.join(".git/hybrid/ledger/t1/2.json")).unwrap()).unwrap();
    assert_eq!(stored["labels"]["score"], l2["score"]);
    assert_eq!(stored["labels"]["ratio"], l2["ratio"]);
    let t2: Value =
        serde_json::from_slice(&std::fs::read(repo.root.join(".git/hybrid/ledger/t2/1.json")).unwrap()).unwrap();
    assert!(t2["labels"].is_null());
    assert_eq!(repo.refs_snapshot(), before);

    // Text output, and labelling again gives the same numbers.
    let text = repo.hybrid_ok(&["label", "t1"]);
    assert!(text.contains("t1#1 (landed): score 1.0000"), "{text}");
    assert!(text.contains("t1#4: skipped"), "{text}");
}

#[test]
fn label_refuses_unknown_and_unlanded_tasks() {
    let Landed { repo, .. } = landed_fixture();
    let before = std::fs::read(repo.root.join(".git/hybrid/ledger/t1/1.json")).unwrap();
    let out = repo.hybrid(&["label", "nope"]);
    assert_code(&out, 2);
    let out = repo.hybrid(&["label", "t2"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("has not landed"), "{}", stderr(&out));
    let out = repo.hybrid(&["label", "--dry-run", "--json"]);
    assert_ok(&out, &["label", "--dry-run"]);
    assert_eq!(std::fs::read(repo.root.join(".git/hybrid/ledger/t1/1.json")).unwrap(), before);
}

#[test]
fn label_with_no_landed_tasks_says_so() {
    let repo = TestRepo::new();
    assert!(repo.hybrid_ok(&["label"]).contains("no landed tasks"));
    let report = repo.hybrid_json(&["label"]);
    assert_eq!(report["labeled"], json!([]));
}
