//! What a landing refuses to move a checkout over (README "Landing safely"): ignored and
//! untracked content where a file and a folder swap places, nested repositories, operations in
//! progress on the target, unresolved conflicts; and which task of a train is blamed. Each case
//! runs on the in-process checkout and on the `git read-tree` fallback
//! (`HYBRID_NO_FAST_CHECKOUT=1`). Every test drives the real binary.
#![cfg(unix)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{assert_code, assert_ok, stderr, stdout, write_file, TestRepo};

/// Starts task `id`, lets `work` change its worktree, and commits everything (ignored files too).
fn task_with(repo: &TestRepo, id: &str, work: impl FnOnce(&Path)) {
    assert_ok(&repo.hybrid(&["start", id]), &["start", id]);
    let dir = repo.task_dir(id);
    work(&dir);
    repo.git_in(&dir, &["add", "-A", "-f"]);
    repo.git_in(&dir, &["commit", "-q", "-m", &format!("{id} work")]);
}

fn merge(repo: &TestRepo, args: &[&str], fast: bool) -> Output {
    let mut all = vec!["merge"];
    all.extend_from_slice(args);
    let mut cmd = repo.hybrid_cmd(&repo.root, &all);
    if !fast {
        cmd.env("HYBRID_NO_FAST_CHECKOUT", "1");
    }
    cmd.output().unwrap()
}

/// Everything a refused landing must leave as it was.
fn state(repo: &TestRepo) -> String {
    format!(
        "{}\n{}\n{}",
        repo.refs_snapshot(),
        repo.git(&["ls-files", "-s", "--debug"]),
        repo.git(&["status", "--porcelain", "--untracked-files=all", "--ignored"])
    )
}

/// One way a file and a folder swap places while the user has ignored content there.
struct Swap {
    name: &'static str,
    /// The committed base (before the task starts).
    base: fn(&TestRepo),
    /// The task's change.
    task: fn(&Path),
    /// The user's ignored content: (path, content).
    ignored: &'static [(&'static str, &'static str)],
    /// What the refusal must name.
    named: &'static [&'static str],
}

const SWAPS: &[Swap] = &[
    Swap {
        name: "ignored file .env (info/exclude), task adds .env/config",
        base: |r| std::fs::write(r.root.join(".git/info/exclude"), ".env\n").unwrap(),
        task: |d| write_file(&d.join(".env/config"), "from the task\n"),
        ignored: &[(".env", "SECRET=1\n")],
        named: &[".env"],
    },
    Swap {
        name: "ignored file logs (.gitignore), task adds logs/today.txt",
        base: |r| {
            r.write(".gitignore", "logs\n");
            r.commit_all("ignore logs");
        },
        task: |d| write_file(&d.join("logs/today.txt"), "today\n"),
        ignored: &[("logs", "the user's log\n")],
        named: &["logs"],
    },
    Swap {
        name: "ignored folder build/, task adds a file build",
        base: |r| {
            r.write(".gitignore", "build/\n");
            r.commit_all("ignore build/");
        },
        task: |d| write_file(&d.join("build"), "a file now\n"),
        ignored: &[("build/cache.bin", "cache\n"), ("build/.env", "SECRET=2\n")],
        named: &["build/"],
    },
    Swap {
        name: "ignored d/secret.key in tracked folder d, task turns d into a file",
        base: |r| {
            r.write(".gitignore", "*.key\n");
            r.write("d/a.txt", "a\n");
            r.commit_all("folder d");
        },
        task: |d| {
            std::fs::remove_dir_all(d.join("d")).unwrap();
            write_file(&d.join("d"), "d is a file now\n");
        },
        ignored: &[("d/secret.key", "KEY\n")],
        named: &["d/secret.key"],
    },
    Swap {
        name: "ignored file in an ignored folder at a path the task adds",
        base: |r| {
            r.write(".gitignore", "out/\n");
            r.commit_all("ignore out/");
        },
        task: |d| write_file(&d.join("out/report.txt"), "from the task\n"),
        ignored: &[("out/report.txt", "the user's report\n"), ("out/other.txt", "other\n")],
        named: &["out/report.txt"],
    },
    Swap {
        name: "ignored folder out/ holding out/sub/, task adds a file out/sub",
        base: |r| {
            r.write(".gitignore", "out/\n");
            r.commit_all("ignore out/");
        },
        task: |d| write_file(&d.join("out/sub"), "a file now\n"),
        ignored: &[("out/sub/f.bin", "bin\n")],
        named: &["out/sub/f.bin"],
    },
];

#[test]
fn ignored_files_where_a_file_and_a_folder_swap_places_refuse_the_landing() {
    for swap in SWAPS {
        for fast in [true, false] {
            let what = format!("{} (fast: {fast})", swap.name);
            let repo = TestRepo::new();
            (swap.base)(&repo);
            task_with(&repo, "t1", swap.task);
            for (p, c) in swap.ignored {
                repo.write(p, c);
            }
            for (p, _) in swap.ignored {
                let ignored = repo.git_out(&repo.root, &["check-ignore", "-q", p]);
                assert!(ignored.status.success(), "{what}: {p} should be ignored");
            }
            let before = state(&repo);
            let out = merge(&repo, &["t1"], fast);
            assert_code(&out, 3);
            let err = stderr(&out);
            for p in swap.named {
                assert!(err.contains(p), "{what}: {p} not named: {err}");
            }
            assert!(err.contains("ignored") && err.contains("re-run"), "{what}: says how to proceed: {err}");
            for (p, c) in swap.ignored {
                assert_eq!(repo.read(p), *c, "{what}: {p} must survive");
            }
            assert_eq!(state(&repo), before, "{what}: nothing moved");

            // Moving the ignored content away, as the message says, lets the task land.
            for (p, _) in swap.ignored {
                let top = p.split('/').next().unwrap();
                let full = repo.root.join(top);
                if full.is_dir() && !repo.git(&["ls-files", top]).is_empty() {
                    std::fs::remove_file(repo.root.join(p)).unwrap();
                } else if full.is_dir() {
                    std::fs::remove_dir_all(full).unwrap();
                } else if full.exists() {
                    std::fs::remove_file(full).unwrap();
                }
            }
            assert_ok(&merge(&repo, &["t1"], fast), &["merge", "t1", &what]);
            assert_eq!(repo.porcelain(&repo.root), "", "{what}");
        }
    }
}

#[test]
fn a_nested_repository_replaced_by_a_file_is_refused() {
    for fast in [true, false] {
        let repo = TestRepo::new();
        // A submodule-like gitlink: a nested repository added to the index.
        let sub = repo.root.join("vendor/sub");
        std::fs::create_dir_all(&sub).unwrap();
        repo.git_in(&sub, &["init", "-q", "-b", "main"]);
        write_file(&sub.join("lib.txt"), "lib\n");
        repo.commit_all_in(&sub, "lib");
        repo.git(&["add", "vendor/sub"]);
        // And a clone the user keeps ignored inside the checkout.
        repo.write(".gitignore", "vendor/clone/\n");
        repo.commit_all("gitlink vendor/sub");
        let clone = repo.root.join("vendor/clone");
        std::fs::create_dir_all(&clone).unwrap();
        repo.git_in(&clone, &["init", "-q"]);
        write_file(&clone.join("work.txt"), "the user's work in a clone\n");

        task_with(&repo, "t1", |d| {
            let _ = std::fs::remove_dir_all(d.join("vendor/sub"));
            write_file(&d.join("vendor/sub"), "a file replaces the submodule\n");
        });
        // The task's tree has a file where the gitlink was.
        let dir = repo.task_dir("t1");
        assert_eq!(repo.git_in(&dir, &["ls-files", "-s", "vendor/sub"]).split(' ').next(), Some("100644"));
        task_with(&repo, "t2", |d| write_file(&d.join("vendor/clone"), "a file where the user's clone is\n"));
        write_file(&sub.join("wip.txt"), "untracked work in the submodule\n");

        for t in ["t1", "t2"] {
            let before = state(&repo);
            let out = merge(&repo, &[t], fast);
            assert_code(&out, 3);
            let named = if t == "t1" { "vendor/sub" } else { "vendor/clone" };
            assert!(stderr(&out).contains(named), "{t} (fast: {fast}): {}", stderr(&out));
            assert_eq!(state(&repo), before, "{t} (fast: {fast})");
        }
        assert!(sub.join(".git").is_dir());
        assert_eq!(std::fs::read_to_string(sub.join("wip.txt")).unwrap(), "untracked work in the submodule\n");
        assert_eq!(std::fs::read_to_string(clone.join("work.txt")).unwrap(), "the user's work in a clone\n");
    }
}

#[test]
fn a_train_blames_only_the_task_whose_folder_becomes_a_file() {
    for fast in [true, false] {
        let repo = TestRepo::new();
        repo.write("d/a.txt", "a\n");
        repo.commit_all("folder d");
        task_with(&repo, "t1", |d| {
            std::fs::remove_dir_all(d.join("d")).unwrap();
            write_file(&d.join("d"), "d is a file now\n");
        });
        task_with(&repo, "t2", |d| write_file(&d.join("two.txt"), "2\n"));
        task_with(&repo, "t3", |d| write_file(&d.join("three.txt"), "3\n"));
        repo.write("d/untracked.txt", "the user's\n");

        let out = merge(&repo, &["--json", "t2", "t1", "t3"], fast);
        assert_code(&out, 3);
        let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let by_task = |t: &str| docs.as_array().unwrap().iter().find(|d| d["task"] == t).unwrap().clone();
        assert_eq!(by_task("t2")["status"], "landed", "fast: {fast}: {}", stdout(&out));
        assert_eq!(by_task("t3")["status"], "landed", "fast: {fast}: {}", stdout(&out));
        let t1 = by_task("t1");
        assert_eq!(t1["status"], "error");
        assert_eq!(t1["exit_code"], 3);
        assert_eq!(t1["paths"], serde_json::json!(["d/untracked.txt"]), "fast: {fast}");
        let msg = t1["error"].as_str().unwrap();
        assert!(msg.contains("t1") && !msg.trim_end().ends_with(':'), "{msg}");
        assert_eq!(repo.read("d/untracked.txt"), "the user's\n");
        assert_eq!(repo.read("two.txt"), "2\n");
        let log = repo.git(&["log", "--format=%(trailers:key=Hybrid-Task,valueonly)", "-2"]);
        assert_eq!(log.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(), ["t3", "t2"]);
        assert_eq!(repo.porcelain(&repo.root), "?? d/untracked.txt");
    }
}

/// A repository with task t1 ready (it adds `a.txt`), a file `f.txt` on main and a branch
/// `side` whose edit of `f.txt` conflicts with main's.
fn with_conflicting_side() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("f.txt", "base\n");
    repo.commit_all("f");
    repo.git(&["branch", "side"]);
    repo.write("f.txt", "main\n");
    repo.commit_all("main edits f");
    repo.git(&["checkout", "-q", "side"]);
    repo.write("f.txt", "side\n");
    repo.commit_all("side edits f");
    repo.git(&["checkout", "-q", "main"]);
    task_with(&repo, "t1", |d| write_file(&d.join("a.txt"), "a\n"));
    repo
}

/// Rewrites the admin entry of the linked worktree `<base>/<name>` the way git 2.48 and later
/// write it with `worktree.useRelativePaths`: `gitdir` relative to the entry.
fn relative_gitdir(repo: &TestRepo, name: &str) {
    let admin = repo.root.join(".git/worktrees").join(name);
    std::fs::write(admin.join("gitdir"), format!("../../../../{name}/.git\n")).unwrap();
}

/// A checkout of the target in a linked worktree whose `gitdir` is relative moves with the
/// landing like any other (it was skipped, leaving that checkout behind its ref).
#[test]
fn a_target_checked_out_where_gitdir_is_relative_moves_with_the_landing() {
    for fast in [true, false] {
        let repo = TestRepo::new();
        task_with(&repo, "t1", |d| write_file(&d.join("a.txt"), "a\n"));
        repo.git(&["checkout", "-q", "-b", "elsewhere"]);
        let wt = repo.base().join("wt");
        repo.git(&["worktree", "add", "-q", wt.to_str().unwrap(), "main"]);
        relative_gitdir(&repo, "wt");
        assert_ok(&merge(&repo, &["t1"], fast), &["merge", "t1"]);
        assert_eq!(std::fs::read_to_string(wt.join("a.txt")).ok().as_deref(), Some("a\n"), "fast={fast}");
        assert_eq!(repo.porcelain(&wt), "", "fast={fast}");
    }
}

#[test]
fn an_operation_in_progress_on_the_target_refuses_the_landing() {
    type Setup = fn(&TestRepo) -> std::path::PathBuf;
    let cases: &[(&str, Setup, &str)] = &[
        (
            "rebase",
            |r| {
                let edit = ["-c", "sequence.editor=sed -i s/^pick/edit/", "rebase", "-q", "-i", "HEAD~1"];
                r.git(&edit);
                r.root.clone()
            },
            "main is being rebased in",
        ),
        (
            "rebase in a linked worktree",
            |r| {
                r.git(&["checkout", "-q", "-b", "elsewhere"]);
                let wt = r.base().join("wt");
                r.git(&["worktree", "add", "-q", wt.to_str().unwrap(), "main"]);
                r.git_in(&wt, &["-c", "sequence.editor=sed -i s/^pick/edit/", "rebase", "-q", "-i", "HEAD~1"]);
                wt
            },
            "main is being rebased in",
        ),
        (
            "rebase in a linked worktree with a relative gitdir",
            |r| {
                r.git(&["checkout", "-q", "-b", "elsewhere"]);
                let wt = r.base().join("wt");
                r.git(&["worktree", "add", "-q", wt.to_str().unwrap(), "main"]);
                relative_gitdir(r, "wt");
                r.git_in(&wt, &["-c", "sequence.editor=sed -i s/^pick/edit/", "rebase", "-q", "-i", "HEAD~1"]);
                wt
            },
            "main is being rebased in",
        ),
        (
            "bisect",
            |r| {
                r.git(&["bisect", "start"]);
                r.root.clone()
            },
            "main is being bisected",
        ),
        (
            "merge",
            |r| {
                assert!(!r.git_out(&r.root, &["merge", "-q", "side"]).status.success());
                r.root.clone()
            },
            "main is being merged into",
        ),
        (
            "cherry-pick",
            |r| {
                assert!(!r.git_out(&r.root, &["cherry-pick", "side"]).status.success());
                r.root.clone()
            },
            "main is being cherry-picked onto",
        ),
        (
            "revert",
            |r| {
                r.write("f.txt", "changed again\n");
                r.commit_all("again");
                assert!(!r.git_out(&r.root, &["revert", "--no-edit", "HEAD~1"]).status.success());
                r.root.clone()
            },
            "main is being reverted on",
        ),
        (
            "am",
            |r| {
                let patch = r.git(&["format-patch", "-1", "--stdout", "side"]);
                let file = r.base().join("side.patch");
                std::fs::write(&file, format!("{patch}\n")).unwrap();
                assert!(!r.git_out(&r.root, &["am", file.to_str().unwrap()]).status.success());
                r.root.clone()
            },
            "main is being patched by `git am`",
        ),
    ];
    for (name, setup, says) in cases {
        let repo = with_conflicting_side();
        let dir = setup(&repo);
        let before = repo.refs_snapshot();
        for fast in [true, false] {
            let out = merge(&repo, &["t1"], fast);
            assert_code(&out, 3);
            let err = stderr(&out);
            assert!(err.contains(says) && err.contains(dir.to_str().unwrap()), "{name}: {err}");
            assert!(err.contains("finish or abort it first"), "{name}: {err}");
            assert_eq!(repo.refs_snapshot(), before, "{name}: nothing moved");
        }
        assert_eq!(repo.tasks()[0]["state"], "ready", "{name}");
    }
}

#[test]
fn unresolved_conflicts_are_named_as_such_not_as_the_landings_paths() {
    for fast in [true, false] {
        let repo = with_conflicting_side();
        assert!(!repo.git_out(&repo.root, &["merge", "-q", "side"]).status.success());
        // The merge is forgotten (no MERGE_HEAD), its conflict stays in the index.
        repo.git(&["merge", "--quit"]);
        let before = state(&repo);
        let out = merge(&repo, &["--json", "t1"], fast);
        assert_code(&out, 3);
        let err: serde_json::Value =
            serde_json::from_slice(&out.stderr).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
        let msg = err["error"].as_str().unwrap();
        assert!(msg.contains("unresolved conflicts") && !msg.contains("landing t1 would"), "{msg}");
        assert_eq!(err["paths"], serde_json::json!(["f.txt"]));
        assert_eq!(state(&repo), before);
    }
}
