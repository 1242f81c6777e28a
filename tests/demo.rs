//! `git hybrid demo`: the README's main-job command, end to end, offline, no identity needed.

mod common;

use std::path::Path;

use common::{assert_code, assert_ok, stderr, stdout, TestRepo};

/// Runs the demo with no git identity in the environment (a fresh machine).
fn demo(r: &TestRepo, args: &[&str]) -> std::process::Output {
    let mut all = vec!["demo"];
    all.extend_from_slice(args);
    let mut cmd = r.hybrid_cmd(&r.base(), &all);
    for k in ["GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"] {
        cmd.env_remove(k);
    }
    cmd.env("TMPDIR", r.base());
    cmd.output().unwrap()
}

fn git(r: &TestRepo, dir: &Path, args: &[&str]) -> String {
    r.git_in(dir, args)
}

#[test]
fn demo_runs_the_plan_end_to_end() {
    let r = TestRepo::new();
    let dir = r.base().join("demo");
    let out = demo(&r, &[dir.to_str().unwrap()]);
    assert_ok(&out, &["demo"]);
    let text = stdout(&out);
    assert!(text.contains("8 landed, 1 conflict"), "{text}");
    assert!(text.contains("conflicts in README.md"), "{text}");

    // One squash commit per landed task on main, on top of the sample's first commit.
    assert_eq!(git(&r, &dir, &["rev-list", "--count", "main"]), "9");
    let st = r.hybrid_in(&dir, &["--json", "status"]);
    assert_ok(&st, &["status"]);
    let doc: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let tasks = doc["tasks"].as_array().unwrap();
    for t in tasks {
        let id = t["id"].as_str().unwrap();
        if id == "tagline-b" {
            assert_eq!(t["state"], "conflict");
            assert_eq!(t["runs"], 0, "an agent was launched for tagline-b");
            continue;
        }
        assert_eq!(t["state"], "landed", "{id}: {t}");
        let sha = t["merge_sha"].as_str().unwrap();
        assert!(text.contains(&sha[..10]), "{id}'s merge SHA is not in the table");
        r.git_in(&dir, &["merge-base", "--is-ancestor", sha, "main"]);
    }
    // The retry: plugin-dice failed verify once, then resumed with the preamble and its notes.
    let dice = tasks.iter().find(|t| t["id"] == "plugin-dice").unwrap();
    assert_eq!(dice["runs"], 2);
    let runs = dir.join(".git/hybrid/runs/plugin-dice/1");
    let prompt2 = std::fs::read_to_string(runs.join("2/prompt.md")).unwrap();
    assert!(prompt2.contains("first draft written"), "{prompt2}");
    assert!(std::fs::read_to_string(runs.join("1/verify.log")).unwrap().contains("FAIL"));

    // Issue 14 item 18: the closing hint's `ls` names run folders, each holding the files it lists.
    let hint = text.lines().find(|l| l.trim_start().starts_with("ls ")).unwrap_or_else(|| panic!("{text}"));
    let (paths, files) = hint.trim_start()["ls ".len()..].split_once('#').unwrap();
    let paths: Vec<&str> = paths.split_whitespace().collect();
    assert_eq!(paths.len(), 2, "{hint}");
    for p in paths {
        for f in files.split_whitespace() {
            assert!(dir.join(p).join(f).is_file(), "{p}{f} (from the hint {hint:?}) is not there");
        }
    }

    // Core tasks serialized: their agent runs do not overlap.
    let span = |id: &str| {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!(".git/hybrid/runs/{id}/1/1/meta.json"))).unwrap())
                .unwrap();
        (m["timing"]["picked_ns"].as_u64().unwrap(), m["timing"]["spawned_ns"].as_u64().unwrap())
    };
    let (log_picked, _) = span("core-logging");
    let (cfg_picked, _) = span("core-config");
    let logging_landed = tasks.iter().find(|t| t["id"] == "core-logging").unwrap()["merge_sha"].as_str().unwrap();
    // core-config started from a target that already had core-logging's landing.
    let cfg_base = tasks.iter().find(|t| t["id"] == "core-config").unwrap()["base"].as_str().unwrap();
    r.git_in(&dir, &["merge-base", "--is-ancestor", logging_landed, cfg_base]);
    assert!(log_picked < cfg_picked);

    // The main checkout followed the landings and is clean; the app runs.
    assert_eq!(r.porcelain(&dir), "");
    assert!(std::fs::read_to_string(dir.join("README.md")).unwrap().contains("Tagline: small core, many plugins."));
    assert!(std::fs::read_to_string(dir.join("docs/plugins.md")).unwrap().contains("- dice"));
    let app = std::process::Command::new("sh").arg("app.sh").current_dir(&dir).output().unwrap();
    assert!(app.status.success());
    assert!(String::from_utf8_lossy(&app.stdout).contains("dice: you rolled"));
}

#[test]
fn demo_refuses_a_non_empty_folder() {
    let r = TestRepo::new();
    let dir = r.base().join("busy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "mine").unwrap();
    let out = demo(&r, &[dir.to_str().unwrap()]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keep.txt")]);
    // A file is refused too.
    let out = demo(&r, &[dir.join("keep.txt").to_str().unwrap()]);
    assert_code(&out, 2);
}

#[test]
fn demo_without_a_folder_uses_a_new_temporary_one() {
    let r = TestRepo::new();
    let out = demo(&r, &["-j", "2"]);
    assert_ok(&out, &["demo"]);
    let text = stdout(&out);
    let line = text.lines().find(|l| l.contains("sample repository in")).unwrap();
    let path = Path::new(line.rsplit("sample repository in ").next().unwrap().trim());
    assert!(path.starts_with(r.base()), "{} not under TMPDIR", path.display());
    assert!(path.join("hybrid.toml").exists());
    assert!(text.contains("8 landed, 1 conflict"), "{text}");
}

#[test]
fn demo_is_not_bothered_by_the_users_global_git_config() {
    let r = TestRepo::new();
    // Signing on, hooks that reject every commit, no identity allowed from guessing.
    let hooks = r.base().join("global-hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::write(hooks.join("pre-commit"), "#!/bin/sh\necho 'global hook says no' >&2\nexit 1\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(hooks.join("pre-commit"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // In $HOME/.gitconfig, so the agents (which get HOME, not GIT_CONFIG_GLOBAL) see it too.
    let global = r.home.join(".gitconfig");
    std::fs::write(
        &global,
        format!(
            "[commit]\n\tgpgsign = true\n[core]\n\thooksPath = {}\n[user]\n\tuseConfigOnly = true\n",
            hooks.display()
        ),
    )
    .unwrap();
    let dir = r.base().join("demo");
    let mut cmd = r.hybrid_cmd(&r.base(), &["demo", dir.to_str().unwrap()]);
    for k in ["GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"] {
        cmd.env_remove(k);
    }
    cmd.env_remove("GIT_CONFIG_GLOBAL");
    let out = cmd.output().unwrap();
    assert_ok(&out, &["demo (hostile global config)"]);
    assert!(stdout(&out).contains("8 landed, 1 conflict"), "{}", stdout(&out));
}
