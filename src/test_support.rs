//! Helpers shared by unit tests (integration tests use `tests/common`).

use std::path::Path;

/// Runs git hermetically (no global or system config, fixed identity) and returns stdout;
/// panics with git's stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@e")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@e")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository in `dir` with two commits: `first`'s files, then `second`'s written over them;
/// checked out (hard reset) at the first. Returns the two commits' ids.
pub fn two_commits_at_first(dir: &Path, first: &[(&str, &str)], second: &[(&str, &str)]) -> (git2::Oid, git2::Oid) {
    git(dir, &["init", "-q"]);
    let commit = |files: &[(&str, &str)], args: &[&str]| {
        for (path, content) in files {
            std::fs::write(dir.join(path), content).expect("write file");
        }
        git(dir, args);
    };
    commit(first, &["add", "."]);
    git(dir, &["commit", "-qm", "one"]);
    commit(second, &["commit", "-qam", "two"]);
    let id = |r: &str| git2::Oid::from_str(git(dir, &["rev-parse", r]).trim()).expect("commit id");
    let ids = (id("HEAD~"), id("HEAD"));
    git(dir, &["reset", "-q", "--hard", "HEAD~"]);
    ids
}

/// Stages `content` at `path` (mode 100644) in an in-memory index, as a test fixture.
pub fn add_file(repo: &git2::Repository, index: &mut git2::Index, path: &str, content: &str) {
    let id = repo.blob(content.as_bytes()).expect("write blob");
    let entry = git2::IndexEntry {
        ctime: git2::IndexTime::new(0, 0),
        mtime: git2::IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        file_size: content.len() as u32,
        id,
        flags: (path.len() as u16) & 0xfff,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    };
    index.add(&entry).expect("stage file");
}
