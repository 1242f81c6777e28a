//! README "Long histories": a commit made since git's commit-graph was last written is read once
//! per repository to learn its generation number (`src/git/commit_facts.rs`), not once per
//! process. Drives the real binary built with `--features failpoints`: with
//! `generation::commit_read=exit(97)` a process exits 97 the moment it reads a commit for that.

mod common;

use common::{assert_code, assert_ok, stdout, TestRepo};

const NO_READS: &str = "generation::commit_read=exit(97)";

#[test]
fn a_later_process_does_not_read_the_commits_an_earlier_one_read() {
    let r = TestRepo::new();
    r.git(&["commit-graph", "write", "--reachable"]);
    r.task_with_commit("t1", "a.txt");
    r.task_with_commit("t2", "b.txt");
    // main moves past the commit-graph: its tip, t1's squash, is outside it, as is t2's commit.
    r.hybrid_ok(&["merge", "t1"]);
    let first = r.hybrid_ok(&["diff", "t2"]);
    assert!(first.contains("+t2"), "{first}");

    // A second process asks the same merge base without reading a commit.
    let (out, _) = r.run_failpoint(&["diff", "t2"], NO_READS);
    assert_ok(&out, &["diff t2, second process"]);
    assert_eq!(stdout(&out), first);

    // The failpoint is live: a commit no process has read yet is read, once.
    r.write("c.txt", "c\n");
    r.commit_all("main moves on");
    let (out, _) = r.run_failpoint(&["diff", "t2"], NO_READS);
    assert_code(&out, 97);
    let moved = r.hybrid_ok(&["diff", "t2"]);
    let (out, _) = r.run_failpoint(&["diff", "t2"], NO_READS);
    assert_ok(&out, &["diff t2, after main moved"]);
    assert_eq!(stdout(&out), moved);

    // The cache is derived: without it the commits are read again, with the same answer.
    std::fs::remove_file(r.root.join(".git/hybrid/commit-facts.bin")).unwrap();
    let (out, _) = r.run_failpoint(&["diff", "t2"], NO_READS);
    assert_code(&out, 97);
    assert_eq!(r.hybrid_ok(&["diff", "t2"]), moved);
    let (out, _) = r.run_failpoint(&["diff", "t2"], NO_READS);
    assert_ok(&out, &["diff t2, cache written again"]);
}
