//! The in-process move of a checked-out target (`src/checkout/fast.rs`) against
//! `git read-tree -m -u`: the same landing is run once on the fast path and once with it disabled
//! (`HYBRID_NO_FAST_CHECKOUT=1`, which forces read-tree), and the checkouts must end identical:
//! `git ls-files -s`, `git status --porcelain`, `git diff`, `git diff --cached`, file contents,
//! modes and symlinks. Configurations the fast path does not cover must go to read-tree and
//! still work. Every test drives the real binary.
#![cfg(unix)]

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use common::{assert_code, assert_ok, stderr, write_file, TestRepo};

fn set_exec(path: &Path, exec: bool) {
    let mut p = std::fs::metadata(path).unwrap().permissions();
    p.set_mode(if exec { 0o755 } else { 0o644 });
    std::fs::set_permissions(path, p).unwrap();
}

/// Everything git can see of a checkout, plus the bytes, modes and links of `paths`.
fn snapshot(repo: &TestRepo, paths: &[&str]) -> String {
    let mut s = String::new();
    for args in [
        &["ls-files", "-s"][..],
        &["status", "--porcelain", "--untracked-files=all", "--ignored"],
        &["diff"],
        &["diff", "--cached"],
        &["rev-parse", "main^{tree}", "HEAD"],
        // Built from the index's cache tree where valid: a stale one would show here.
        &["write-tree"],
    ] {
        s.push_str(&format!("$ git {}\n{}\n", args.join(" "), repo.git(args)));
    }
    for p in paths {
        let full = repo.root.join(p);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                s.push_str(&format!("{p}: link -> {}\n", std::fs::read_link(&full).unwrap().display()))
            }
            Ok(m) => s.push_str(&format!(
                "{p}: mode {:o} {:?}\n",
                m.permissions().mode() & 0o111,
                std::fs::read_to_string(&full).unwrap_or_else(|_| "<binary>".into())
            )),
            Err(_) => s.push_str(&format!("{p}: absent\n")),
        }
    }
    for d in ["gone", "new", "new/deep"] {
        s.push_str(&format!("dir {d}: {}\n", repo.root.join(d).is_dir()));
    }
    s
}

/// Runs `git hybrid merge t1` with the fast path on or off; returns stderr (with the debug note
/// that says when read-tree was used).
fn land(repo: &TestRepo, fast: bool) -> String {
    let mut cmd = repo.hybrid_cmd(&repo.root, &["merge", "t1"]);
    cmd.env("HYBRID_DEBUG_CHECKOUT", "1").env("HYBRID_VERIFY_INDEX_CHECKSUM", "1");
    if !fast {
        cmd.env("HYBRID_NO_FAST_CHECKOUT", "1");
    }
    let out = cmd.output().unwrap();
    assert_ok(&out, &["merge", "t1", if fast { "(fast)" } else { "(read-tree)" }]);
    stderr(&out)
}

const PATHS: &[&str] = &[
    "keep.txt",
    "staged.txt",
    "mod/a.txt",
    "gone/only.txt",
    "run.sh",
    "tool",
    "link",
    "link2",
    "new/deep/n.txt",
    "other.txt",
    "untracked.txt",
    "ignored.log",
];

/// A repository where task t1 modifies, adds (in new folders), deletes (emptying a folder),
/// flips exec bits, adds and retargets symlinks and turns a symlink into a file; main moves on a
/// disjoint file (catch-up); the user has an unstaged edit, a staged change, an untracked and an
/// ignored file elsewhere.
fn scenario() -> TestRepo {
    let repo = TestRepo::new();
    repo.write(".gitignore", "*.log\n");
    repo.write("keep.txt", "keep\n");
    repo.write("staged.txt", "staged\n");
    repo.write("mod/a.txt", "a\n");
    repo.write("mod/b.txt", "b\n");
    repo.write("gone/only.txt", "only\n");
    repo.write("run.sh", "#!/bin/sh\necho run\n");
    set_exec(&repo.root.join("run.sh"), true);
    repo.write("tool", "tool\n");
    symlink("mod/a.txt", repo.root.join("link2")).unwrap();
    symlink("keep.txt", repo.root.join("link3")).unwrap();
    repo.commit_all("base");

    assert_ok(&repo.hybrid(&["start", "t1"]), &["start", "t1"]);
    let dir = repo.task_dir("t1");
    write_file(&dir.join("mod/a.txt"), "a changed by the task\n");
    std::fs::remove_file(dir.join("gone/only.txt")).unwrap();
    set_exec(&dir.join("run.sh"), false);
    set_exec(&dir.join("tool"), true);
    symlink("mod/b.txt", dir.join("link")).unwrap();
    std::fs::remove_file(dir.join("link2")).unwrap();
    symlink("mod/b.txt", dir.join("link2")).unwrap();
    std::fs::remove_file(dir.join("link3")).unwrap();
    write_file(&dir.join("link3"), "now a file\n");
    write_file(&dir.join("new/deep/n.txt"), "new\n");
    repo.git_in(&dir, &["add", "-A"]);
    repo.git_in(&dir, &["commit", "-q", "-m", "task work"]);

    repo.write("other.txt", "main moved\n");
    repo.commit_all("main moves on");

    repo.write("keep.txt", "keep, edited by the user\n");
    repo.write("staged.txt", "staged by the user\n");
    repo.git(&["add", "staged.txt"]);
    repo.write("untracked.txt", "untracked\n");
    repo.write("ignored.log", "ignored\n");
    repo
}

#[test]
fn fast_move_equals_read_tree() {
    let fast = scenario();
    let slow = scenario();
    let err_fast = land(&fast, true);
    let err_slow = land(&slow, false);
    assert!(!err_fast.contains("read-tree"), "the fast path should run here: {err_fast}");
    assert!(err_slow.contains("read-tree"), "{err_slow}");
    let mut paths = PATHS.to_vec();
    paths.push("link3");
    let (a, b) = (snapshot(&fast, &paths), snapshot(&slow, &paths));
    assert_eq!(a, b);
    if std::env::var_os("SHOW_SNAPSHOT").is_some() {
        eprintln!("{a}");
    }
    // And what the landing had to do, spelled out.
    assert_eq!(fast.read("mod/a.txt"), "a changed by the task\n");
    assert_eq!(fast.read("keep.txt"), "keep, edited by the user\n");
    assert!(!fast.root.join("gone").exists(), "a folder the landing emptied is removed");
    assert_eq!(fast.git(&["diff", "--cached", "--name-only"]), "staged.txt");
    assert_eq!(fast.git(&["diff", "--name-only"]), "keep.txt");
    // The index is a valid index git can build a tree from: staged change aside, it is main's tree.
    fast.git(&["stash", "-q"]);
    assert_eq!(fast.git(&["write-tree"]), fast.rev("main^{tree}"));
    let fsck = fast.git_out(&fast.root, &["fsck", "--no-progress"]);
    assert!(fsck.status.success(), "{}", stderr(&fsck));
}

#[test]
fn fast_move_refuses_local_changes_on_changed_paths_like_read_tree() {
    for fast in [true, false] {
        let repo = scenario();
        repo.write("mod/a.txt", "the user's edit\n");
        let before = repo.refs_snapshot();
        let index_before = repo.git(&["ls-files", "-s", "--debug"]);
        let mut cmd = repo.hybrid_cmd(&repo.root, &["merge", "t1"]);
        if !fast {
            cmd.env("HYBRID_NO_FAST_CHECKOUT", "1");
        }
        let out = cmd.output().unwrap();
        assert_code(&out, 3);
        assert!(stderr(&out).contains("mod/a.txt"), "{}", stderr(&out));
        assert_eq!(repo.read("mod/a.txt"), "the user's edit\n");
        assert_eq!(repo.refs_snapshot(), before, "no ref moved (fast: {fast})");
        assert_eq!(repo.git(&["ls-files", "-s", "--debug"]), index_before, "index untouched (fast: {fast})");
        assert!(!repo.root.join(".git/index.lock").exists());
        // Staged on a changed path blocks too, and an untracked file where the task adds one.
        repo.write("mod/a.txt", "a\n");
        repo.write("new/deep/n.txt", "mine\n");
        let out = repo.hybrid(&["merge", "t1"]);
        assert_code(&out, 3);
        assert!(stderr(&out).contains("new/deep/n.txt"), "{}", stderr(&out));
        assert_eq!(repo.read("new/deep/n.txt"), "mine\n");
    }
}

#[test]
fn a_file_where_the_task_adds_a_folder_is_left_to_read_tree() {
    let repo = TestRepo::new();
    repo.write("keep.txt", "k\n");
    repo.commit_all("base");
    assert_ok(&repo.hybrid(&["start", "t1"]), &["start", "t1"]);
    let dir = repo.task_dir("t1");
    write_file(&dir.join("x/y.txt"), "y\n");
    repo.commit_all_in(&dir, "task adds x/y.txt");
    // An untracked file `x` where the task needs a folder: git refuses; so must the landing.
    repo.write("x", "untracked file in the way\n");
    let out = repo.hybrid(&["merge", "t1"]);
    assert_code(&out, 3);
    assert_eq!(repo.read("x"), "untracked file in the way\n");
    assert_eq!(repo.porcelain(&repo.root), "?? x");
    std::fs::remove_file(repo.root.join("x")).unwrap();
    land(&repo, true);
    assert_eq!(repo.read("x/y.txt"), "y\n");
    assert_eq!(repo.porcelain(&repo.root), "");
}

/// A repository whose attributes or config make git convert line endings on checkout.
fn crlf_scenario(setup: impl Fn(&TestRepo)) -> TestRepo {
    let repo = TestRepo::new();
    setup(&repo);
    repo.write("doc.txt", "one\ntwo\n");
    repo.commit_all("base");
    assert_ok(&repo.hybrid(&["start", "t1"]), &["start", "t1"]);
    let dir = repo.task_dir("t1");
    write_file(&dir.join("doc.txt"), "one\ntwo\nthree\n");
    repo.git_in(&dir, &["add", "-A"]);
    repo.git_in(&dir, &["commit", "-q", "-m", "task edits doc"]);
    repo
}

#[test]
fn crlf_conversion_falls_back_to_read_tree_and_still_works() {
    let by_attributes = crlf_scenario(|r| {
        r.write(".gitattributes", "* text=auto eol=crlf\n");
    });
    let by_config = crlf_scenario(|r| {
        r.git(&["config", "core.autocrlf", "true"]);
    });
    // Set where libgit2 alone would not look: the file GIT_CONFIG_GLOBAL names.
    let by_global_env = crlf_scenario(|r| {
        std::fs::write(&r.empty_config, "[core]\n\tautocrlf = true\n").unwrap();
    });
    for repo in [by_attributes, by_config, by_global_env] {
        // The checkout has the converted file, as git wrote it (the read-tree path's pre-check
        // reads the status through git, which reads the file GIT_CONFIG_GLOBAL names too).
        std::fs::remove_file(repo.root.join("doc.txt")).unwrap();
        repo.git(&["checkout", "--", "doc.txt"]);
        assert_eq!(std::fs::read(repo.root.join("doc.txt")).unwrap(), b"one\r\ntwo\r\n");
        let err = land(&repo, true);
        assert!(err.contains("read-tree"), "must fall back: {err}");
        assert_eq!(std::fs::read(repo.root.join("doc.txt")).unwrap(), b"one\r\ntwo\r\nthree\r\n");
        assert_eq!(repo.porcelain(&repo.root), "");
        assert_eq!(repo.git(&["show", "main:doc.txt"]), "one\ntwo\nthree");
    }
}

#[test]
fn text_auto_with_lf_output_keeps_the_fast_path() {
    let repo = crlf_scenario(|r| r.write(".gitattributes", "* text=auto\n"));
    let err = land(&repo, true);
    assert!(!err.contains("read-tree"), "{err}");
    assert_eq!(repo.read("doc.txt"), "one\ntwo\nthree\n");
    assert_eq!(repo.porcelain(&repo.root), "");
}

#[test]
fn a_filter_attribute_on_a_changed_path_falls_back() {
    let repo = crlf_scenario(|r| {
        r.write(".gitattributes", "*.txt ident\n");
    });
    let err = land(&repo, true);
    assert!(err.contains("read-tree") && err.contains("ident"), "{err}");
    assert_eq!(repo.read("doc.txt"), "one\ntwo\nthree\n");
    assert_eq!(repo.porcelain(&repo.root), "");
}

#[test]
fn attributes_on_other_paths_a_macro_or_only_the_index_are_read_as_git_reads_them() {
    // A converting attribute for other paths only: the fast path stays.
    let other = crlf_scenario(|r| r.write(".gitattributes", "*.bat text eol=crlf\n/t/* ident\n"));
    let err = land(&other, true);
    assert!(!err.contains("read-tree"), "{err}");
    assert_eq!(other.read("doc.txt"), "one\ntwo\nthree\n");
    // Through a macro defined in info/attributes.
    let by_macro = crlf_scenario(|r| {
        r.write(".gitattributes", "*.txt winfile\n");
        std::fs::create_dir_all(r.root.join(".git/info")).unwrap();
        std::fs::write(r.root.join(".git/info/attributes"), "[attr]winfile text eol=crlf\n").unwrap();
    });
    let err = land(&by_macro, true);
    assert!(err.contains("read-tree"), "a macro setting eol=crlf must fall back: {err}");
    // Only the index's .gitattributes converts (the user emptied the file, unstaged): git checks
    // out with the index's attributes, so this must fall back too.
    let index_only = crlf_scenario(|r| r.write(".gitattributes", "doc.txt ident\n"));
    index_only.write(".gitattributes", "");
    let err = land(&index_only, true);
    assert!(err.contains("read-tree"), "the index's attributes count: {err}");
    assert_eq!(index_only.read("doc.txt"), "one\ntwo\nthree\n");
}

#[test]
fn a_stale_index_lock_of_a_killed_landing_is_removed_but_a_git_one_is_not() {
    let repo = scenario();
    // A lock git (or anyone) holds: the landing waits, then reports busy, changing nothing.
    std::fs::write(repo.root.join(".git/index.lock"), "").unwrap();
    let before = repo.refs_snapshot();
    let out = repo.hybrid_cmd(&repo.root, &["merge", "t1"]).env("HYBRID_INDEX_LOCK_WAIT_MS", "300").output().unwrap();
    assert_code(&out, 4);
    assert_eq!(repo.refs_snapshot(), before);
    assert!(repo.root.join(".git/index.lock").exists(), "someone else's lock is never removed");
    std::fs::remove_file(repo.root.join(".git/index.lock")).unwrap();

    // A landing killed while it holds the index lock (held from the check to the index write):
    // the next landing removes that lock.
    repo.kill_at(&["merge", "t1"], "land::note_written");
    let held = repo.root.join(".git/index.lock").exists();
    assert!(held, "the index lock is held at that step");
    land(&repo, true);
    assert!(!repo.root.join(".git/index.lock").exists(), "stale lock removed (it was left: {held})");
    assert!(!repo.root.join(".git/hybrid-index").exists());
    assert_eq!(repo.read("mod/a.txt"), "a changed by the task\n");
    assert_eq!(repo.git(&["diff", "--cached", "--name-only"]), "staged.txt");
}

#[test]
fn a_landing_killed_between_writing_files_and_the_index_is_finished_by_the_next_run() {
    let repo = scenario();
    // Killed inside the checkout move, after the files are written and before the index is.
    repo.kill_at(&["merge", "t1"], "checkout::files_written");
    assert_eq!(repo.read("mod/a.txt"), "a changed by the task\n", "killed after the files were written");
    // Hidden from git until the ref moves (assume-unchanged): a commit now cannot take it in.
    assert_eq!(repo.git(&["ls-files", "-v", "mod/a.txt"]), "h mod/a.txt");
    assert!(!repo.porcelain(&repo.root).contains("mod/a.txt"), "{}", repo.porcelain(&repo.root));
    let err = land(&repo, true);
    assert!(!err.contains("read-tree"), "{err}");
    let slow = scenario();
    land(&slow, false);
    let mut paths = PATHS.to_vec();
    paths.push("link3");
    assert_eq!(snapshot(&repo, &paths), snapshot(&slow, &paths));
}

/// `git` for the landing, through a wrapper that makes another git command's `index.lock` appear
/// exactly when the landing's `git read-tree` starts (git-hybrid passes `-c` options first, so the
/// wrapper looks for `read-tree` among all arguments) (the race between waiting for the lock and
/// git taking it) and go away a moment later, as a user's `git status` does.
#[test]
fn an_index_lock_taken_just_before_read_tree_is_waited_for() {
    let repo = TestRepo::new();
    assert_ok(&repo.hybrid(&["start", "t1"]), &["start", "t1"]);
    let dir = repo.task_dir("t1");
    write_file(&dir.join("a.txt"), "a\n");
    repo.commit_all_in(&dir, "task");
    let real_git =
        String::from_utf8(std::process::Command::new("sh").args(["-c", "command -v git"]).output().unwrap().stdout)
            .unwrap();
    let bin = repo.base().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let lock = repo.root.join(".git/index.lock");
    let marker = repo.base().join("lock-taken");
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *\" read-tree \"*) is_read_tree=1 ;; esac\n\
         if [ -n \"$is_read_tree\" ] && [ ! -e '{m}' ]; then\n  : > '{m}'\n  : > '{l}'\n  \
         (sleep 1; rm -f '{l}') </dev/null >/dev/null 2>&1 &\nfi\nexec '{g}' \"$@\"\n",
        m = marker.display(),
        l = lock.display(),
        g = real_git.trim()
    );
    write_file(&bin.join("git"), &script);
    set_exec(&bin.join("git"), true);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = repo
        .hybrid_cmd(&repo.root, &["merge", "t1"])
        .env("PATH", path)
        .env("HYBRID_NO_FAST_CHECKOUT", "1")
        .output()
        .unwrap();
    assert!(marker.exists(), "the wrapper ran");
    assert_ok(&out, &["merge", "t1"]);
    assert_eq!(repo.read("a.txt"), "a\n");
    assert_eq!(repo.porcelain(&repo.root), "");
}

#[test]
fn a_sparse_checkout_lands_changes_outside_its_cone() {
    for fast in [true, false] {
        let repo = TestRepo::new();
        repo.write("d/d.txt", "d\n");
        repo.write("e/e.txt", "e\n");
        repo.commit_all("base");
        assert_ok(&repo.hybrid(&["start", "t1"]), &["start", "t1"]);
        let dir = repo.task_dir("t1");
        write_file(&dir.join("e/e.txt"), "e changed outside the cone\n");
        write_file(&dir.join("d/d.txt"), "d changed inside the cone\n");
        repo.commit_all_in(&dir, "task");
        repo.git(&["sparse-checkout", "set", "d"]);
        assert!(!repo.root.join("e").exists());
        let mut cmd = repo.hybrid_cmd(&repo.root, &["merge", "t1"]);
        if !fast {
            cmd.env("HYBRID_NO_FAST_CHECKOUT", "1");
        }
        assert_ok(&cmd.output().unwrap(), &["merge", "t1"]);
        // The index holds the landing, the file outside the cone is not written, as git does.
        assert_eq!(repo.git(&["show", ":e/e.txt"]), "e changed outside the cone");
        assert_eq!(repo.git(&["ls-files", "-t", "e/e.txt"]), "S e/e.txt");
        assert!(!repo.root.join("e").exists(), "fast: {fast}");
        assert_eq!(repo.read("d/d.txt"), "d changed inside the cone\n");
        assert_eq!(repo.porcelain(&repo.root), "");
    }
}

#[test]
fn a_split_index_lands() {
    for fast in [true, false] {
        let repo = scenario();
        repo.git(&["update-index", "--split-index"]);
        let mut cmd = repo.hybrid_cmd(&repo.root, &["merge", "t1"]);
        if !fast {
            cmd.env("HYBRID_NO_FAST_CHECKOUT", "1");
        }
        assert_ok(&cmd.output().unwrap(), &["merge", "t1"]);
        assert_eq!(repo.read("mod/a.txt"), "a changed by the task\n");
        assert_eq!(repo.git(&["diff", "--cached", "--name-only"]), "staged.txt");
        assert_eq!(repo.git(&["diff", "--name-only"]), "keep.txt");
        repo.git(&["stash", "-q"]);
        assert_eq!(repo.git(&["write-tree"]), repo.rev("main^{tree}"));
    }
}
