//! Benchmark of the landing gate (not a timed test: it prints, it asserts nothing about time).
//!
//! `cargo test --release --test gate_bench -- --ignored --nocapture`
//!
//! A repository of 5,000 files in 50 folders; the squash changes 10 files with 100 added lines
//! each (1,000 lines, with words such as `token` and `secret` so the secret scan's prefilter
//! passes and its regexes run) and adds 5 files. It times everything the gate does for one
//! squash: compiling the gate (globs, verify commands, allowlist) and checking the squash
//! (tree diff, claims, protected paths, path validation, secret scan of lines and message).

use std::time::Instant;

use git2::{Repository, Signature};
use git_hybrid::gate::{Gate, GateOptions};
use git_hybrid::ledger::TaskRecord;
use git_hybrid::repo::Project;

fn tree_with(repo: &Repository, files: &[(String, String)]) -> git2::Oid {
    let mut idx = git2::Index::new().unwrap();
    for (path, content) in files {
        let id = repo.blob(content.as_bytes()).unwrap();
        let mut e = git2::IndexEntry {
            ctime: git2::IndexTime::new(0, 0),
            mtime: git2::IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            file_size: content.len() as u32,
            id,
            flags: 0,
            flags_extended: 0,
            path: path.as_bytes().to_vec(),
        };
        e.flags = (path.len().min(0xfff)) as u16;
        idx.add(&e).unwrap();
    }
    idx.write_tree_to(repo).unwrap()
}

#[test]
#[ignore]
fn gate_cost_for_a_1000_line_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    let repo = Repository::init(&root).unwrap();
    std::fs::write(
        root.join("hybrid.toml"),
        "[verify]\ncommand = [\"sh\", \"ci/verify.sh\"]\n\n[land]\nprotected = [\"deploy/**\"]\n",
    )
    .unwrap();
    let mut files: Vec<(String, String)> = Vec::new();
    for d in 0..50 {
        for f in 0..100 {
            files.push((format!("src/m{d}/f{f}.rs"), format!("// module {d} file {f}\nfn f{f}() {{}}\n")));
        }
    }
    let base_tree = tree_with(&repo, &files);
    for (i, (_, content)) in files.iter_mut().take(10).enumerate() {
        for l in 0..100 {
            content.push_str(&format!(
                "    let token_{l} = parse_secret(&config.secret_name, {i}); // read the next token {l}\n"
            ));
        }
    }
    for n in 0..5 {
        files.push((format!("src/new/n{n}.rs"), "pub fn new() {}\n".into()));
    }
    let new_tree = tree_with(&repo, &files);
    let sig = Signature::now("t", "t@example.com").unwrap();
    let base = repo.commit(Some("HEAD"), &sig, &sig, "base", &repo.find_tree(base_tree).unwrap(), &[]).unwrap();
    let _ = base;

    let project = Project::open(&root).unwrap();
    let mut rec = TaskRecord::new("t1", 1, "hybrid/t1", &root, "0", "main");
    rec.claims = Some(vec!["src/**".into()]);
    let message = "Task t1\n\n- change ten files\n\nHybrid-Task: t1\n";
    let (bt, nt) = (project.repo.find_tree(base_tree).unwrap(), project.repo.find_tree(new_tree).unwrap());

    // Compiling every secret regex, which a process does once (and only for the patterns whose
    // needles its texts contain): measured apart from the gate runs.
    let t = Instant::now();
    let all_needles = "private secret akia ghp_ github_pat_ glpat- sk-ant- sk- xoxb- hooks.slack.com sk_live_ aiza \
                       npm_ hf_ sg. pypi- accountkey eyj password";
    let _ = git_hybrid::secrets::scan(all_needles);
    let compile = t.elapsed();

    let mut times = Vec::new();
    for _ in 0..51 {
        let t = Instant::now();
        let gate = Gate::new(&project, &GateOptions::default()).unwrap();
        let f = gate.check(&rec, &bt, &nt, message).unwrap();
        times.push(t.elapsed());
        assert!(f.refusal("t1").is_none(), "{f:?}");
    }
    let cold = times.remove(0);
    times.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "gate, 1,000 added lines in 10 files + 5 new files, 5,000-file repository: median {:.2} ms, \
         min {:.2} ms, max {:.2} ms (50 warm runs); first run {:.2} ms (cold object reads); \
         compiling all secret regexes once per process {:.2} ms",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        ms(cold),
        ms(compile)
    );
}
