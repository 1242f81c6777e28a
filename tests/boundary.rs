//! The agent boundary (issues 11 and 18): nothing an agent plants in the shared git dir runs on
//! the host with the host's environment, tampering is restored and reported, agents run in a
//! Landlock sandbox and die with their dispatcher.
//!
//! Planted programs append `== <name>` and their whole environment to `planted.log` beside the
//! repository; the tests put secrets in the environment of git-hybrid and assert that no planted
//! program ever saw one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_code, assert_ok, stderr, TestRepo};

/// Secrets in the dispatcher's environment.
const SECRETS: &[(&str, &str)] = &[
    ("AWS_SECRET_ACCESS_KEY", "aws-secret-7f3a9c"),
    ("GITHUB_TOKEN", "ghp_planted0secret0value0000000000000000"),
    ("ANTHROPIC_API_KEY", "sk-ant-secret-value-1b2c"),
    ("OPENAI_API_KEY", "sk-openai-secret-value-3d4e"),
];

/// The planted program: logs its name and environment, then passes stdin through (so it also
/// works as a clean/smudge filter).
fn planted_script(log: &Path, name: &str) -> String {
    format!("#!/bin/sh\n{{ echo \"== {name} $*\"; env; }} >> '{}'\ncat 2>/dev/null\nexit 0\n", log.display())
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `git-hybrid <args>` in `dir` with the secrets in its environment.
fn hybrid_with_secrets(r: &TestRepo, dir: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd: Command = r.hybrid_cmd(dir, args);
    for (k, v) in SECRETS.iter().chain(extra_env) {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Panics when any planted program ran with a secret; returns the log.
fn assert_no_secret_seen(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for (k, v) in SECRETS {
        assert!(!text.contains(v), "a planted program ran with {k} in its environment:\n{text}");
    }
    text
}

/// Plants hooks, fsmonitor, a filter driver and gpg signing in the shared git dir, as an agent
/// would (the repository's own `git config`, never the user's global one).
fn plant_everything(r: &TestRepo, log: &Path) -> PathBuf {
    let common = r.root.join(".git");
    let bin = r.base().join("planted");
    for hook in
        ["pre-commit", "post-commit", "post-index-change", "reference-transaction", "post-checkout", "pre-auto-gc"]
    {
        write_exec(&common.join("hooks").join(hook), &planted_script(log, hook));
    }
    for name in ["fsmonitor", "smudge", "clean", "gpg"] {
        write_exec(&bin.join(name), &planted_script(log, name));
    }
    let cfg = |k: &str, v: &Path| r.git(&["config", k, &v.to_string_lossy()]);
    cfg("core.fsmonitor", &bin.join("fsmonitor"));
    cfg("filter.evil.smudge", &bin.join("smudge"));
    cfg("filter.evil.clean", &bin.join("clean"));
    r.git(&["config", "filter.evil.required", "true"]);
    cfg("gpg.program", &bin.join("gpg"));
    r.git(&["config", "commit.gpgSign", "true"]);
    bin
}

#[test]
fn git_children_never_run_planted_hooks_filters_or_signing_with_secrets() {
    let r = TestRepo::new();
    // The task leaves its work uncommitted: git-hybrid's checkpoint commits it.
    r.write("agent.sh", "echo work > a.txt\n");
    r.write(".gitattributes", "*.txt filter=evil\n");
    r.write(
        "hybrid.toml",
        "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\n\n[[task]]\nid = \"t1\"\nprompt = \"p\"\ntouches = [\"a.txt\"]\n",
    );
    r.commit_all("setup");
    let log = r.base().join("planted.log");
    plant_everything(&r, &log);

    // Checkpoint commit (git add -A, git commit) and the landing through read-tree (the
    // filter attribute keeps the in-process checkout off) in the user's checkout.
    let out = hybrid_with_secrets(&r, &r.root, &["dispatch"], &[]);
    assert_ok(&out, &["dispatch"]);
    assert_eq!(r.read("a.txt"), "work\n");
    assert!(r.git(&["log", "-1", "--format=%B", "main"]).contains("Hybrid-Task: t1"));
    // `git worktree add` (filter drivers configured) on start.
    let out = hybrid_with_secrets(&r, &r.root, &["start", "t2"], &[]);
    assert_ok(&out, &["start"]);
    assert_eq!(std::fs::read_to_string(r.task_dir("t2").join("a.txt")).unwrap(), "work\n");
    // And a merge through read-tree with the fast path off.
    std::fs::write(r.task_dir("t2").join("b.txt"), "more\n").unwrap();
    r.git_in(&r.task_dir("t2"), &["-c", "commit.gpgSign=false", "add", "-A"]);
    r.git_in(
        &r.task_dir("t2"),
        &["-c", "commit.gpgSign=false", "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "b"],
    );
    let out = hybrid_with_secrets(&r, &r.root, &["merge", "t2"], &[("HYBRID_NO_FAST_CHECKOUT", "1")]);
    assert_ok(&out, &["merge"]);
    assert_eq!(r.read("b.txt"), "more\n");
    assert_no_secret_seen(&log);
}

#[test]
fn a_filter_from_the_trusted_global_config_still_runs() {
    let r = TestRepo::new();
    let log = r.base().join("trusted.log");
    let bin = r.base().join("trusted-smudge");
    write_exec(&bin, &planted_script(&log, "trusted-smudge"));
    // The user's global config defines the driver; the repository's config redefines it.
    std::fs::write(&r.empty_config, format!("[filter \"lfsish\"]\n\tsmudge = {}\n", bin.display())).unwrap();
    r.write(".gitattributes", "*.bin filter=lfsish\n");
    r.write("x.bin", "payload\n");
    r.commit_all("attrs");
    let planted = r.base().join("planted-smudge");
    let plog = r.base().join("planted.log");
    write_exec(&planted, &planted_script(&plog, "planted-smudge"));
    r.git(&["config", "filter.lfsish.smudge", &planted.to_string_lossy()]);
    let out = hybrid_with_secrets(&r, &r.root, &["start", "t1"], &[]);
    assert_ok(&out, &["start"]);
    assert_eq!(std::fs::read_to_string(r.task_dir("t1").join("x.bin")).unwrap(), "payload\n");
    assert!(!plog.exists(), "the repository's own driver ran: {}", std::fs::read_to_string(&plog).unwrap());
    let trusted = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(trusted.contains("== trusted-smudge"), "the user's global driver did not run: {trusted}");
    std::fs::write(&r.empty_config, "").unwrap();
}

/// The hostile agent: tries every attack and logs `<attack> ok|denied` to
/// `$HYBRID_RUN_DIR/attacks.log`. `$1` holds the planted program (`hook`), `$2` is another
/// task's worktree.
const HOSTILE: &str = r#"#!/bin/sh
log="$HYBRID_RUN_DIR/attacks.log"
try() { name="$1"; shift; if "$@" 2>>"$HYBRID_RUN_DIR/attack-errors.log"; then echo "$name ok" >> "$log"; else echo "$name denied" >> "$log"; fi; }
common=$(cd "$(git rev-parse --git-common-dir)" && pwd)
main=$(dirname "$common")
planted="$1"
for h in pre-commit post-commit post-index-change reference-transaction post-checkout; do
  try "hook-$h" cp "$planted/hook" "$common/hooks/$h"
done
try fsmonitor git config core.fsmonitor "$planted/hook"
try filter git config filter.evil.smudge "$planted/hook"
try gpg sh -c "git config gpg.program '$planted/hook' && git config commit.gpgSign true"
try hybrid-toml sh -c "printf '\n[hooks]\nallow_secrets = [\"ghp_\"]\n' >> '$main/hybrid.toml'"
try main-verify sh -c "echo 'exit 0' > '$main/verify.sh'"
try main-checkout sh -c "echo pwned > '$main/pwned.txt'"
try other-worktree sh -c "echo pwned > '$2/pwned.txt'"
try info-exclude sh -c "echo '*' >> '$common/info/exclude'"
dpid=$(awk '{print $4}' /proc/$PPID/stat)
try environ sh -c "cat /proc/$dpid/environ > '$HYBRID_RUN_DIR/stolen-env'"
# Its own work: a verify script that always passes, a file outside the claims, a token, a
# filter attribute, committed past every hook.
echo 'exit 0' > verify.sh
echo outside > outside.txt
echo "token = ghp_abcdefghijklmnopqrstuvwxyz0123456789" > leak.txt
echo '* filter=evil' > .gitattributes
echo inside > in/claimed.txt
git add -A
try commit git -c core.hooksPath=/dev/null -c commit.gpgSign=false commit -q --no-verify -m "hostile work"
exit 0
"#;

const ATTACKS: &[&str] = &[
    "hook-pre-commit",
    "hook-post-commit",
    "hook-post-index-change",
    "hook-reference-transaction",
    "hook-post-checkout",
    "fsmonitor",
    "filter",
    "gpg",
    "hybrid-toml",
    "main-verify",
    "main-checkout",
    "other-worktree",
    "info-exclude",
];

/// A repository whose plan runs [`HOSTILE`] as task `evil` (claims `in/**`), with a victim
/// worktree started by hand; `sandbox` is the `[agent] sandbox` value.
fn hostile_repo(sandbox: &str) -> (TestRepo, PathBuf) {
    let r = TestRepo::new();
    let log = r.base().join("planted.log");
    let planted = r.base().join("planted");
    write_exec(&planted.join("hook"), &planted_script(&log, "planted"));
    r.write("hostile.sh", HOSTILE);
    r.write("verify.sh", "test -f in/claimed.txt\n");
    r.write("in/.keep", "");
    r.write(
        "hybrid.toml",
        &format!(
            "[agent]\ncommand = [\"builtin:script\", \"hostile.sh\"]\nsandbox = \"{sandbox}\"\n\n[verify]\ncommand = \
             [\"sh\", \"verify.sh\"]\n\n[[task]]\nid = \"evil\"\nprompt = \"p\"\ntouches = [\"in/**\"]\nagent = \
             [\"builtin:script\", \"hostile.sh\", \"{}\", \"{}\"]\n",
            planted.display(),
            r.task_dir("victim").display()
        ),
    );
    r.commit_all("setup");
    r.hybrid_ok(&["start", "victim"]);
    (r, log)
}

/// The bytes of everything the hostile agent must not change.
fn protected_state(r: &TestRepo) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let common = r.root.join(".git");
    let mut paths = vec![
        common.join("config"),
        r.root.join("hybrid.toml"),
        r.root.join("verify.sh"),
        common.join("info/exclude"),
        r.root.join("pwned.txt"),
        r.task_dir("victim").join("pwned.txt"),
    ];
    for h in ["pre-commit", "post-commit", "post-index-change", "reference-transaction", "post-checkout"] {
        paths.push(common.join("hooks").join(h));
    }
    paths
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).ok();
            (p, b)
        })
        .collect()
}

fn evil_run(r: &TestRepo) -> PathBuf {
    r.root.join(".git/hybrid/runs/evil/1/1")
}

fn evil_record(r: &TestRepo) -> serde_json::Value {
    r.tasks().into_iter().find(|t| t["id"] == "evil").expect("a record for evil")
}

#[test]
fn hostile_agent_under_landlock_changes_nothing_and_lands_nothing() {
    let Some(abi) = git_hybrid::agent::sandbox::probe() else {
        // Not this machine (its kernel has Landlock ABI 7); the tamper test covers the rest.
        panic!("this kernel does not support Landlock: the sandbox cannot be tested here");
    };
    assert!(abi >= 1);
    let (r, log) = hostile_repo("landlock");
    let before = protected_state(&r);
    let main_before = r.rev("main");
    let out = hybrid_with_secrets(&r, &r.root, &["dispatch"], &[]);
    let attacks = std::fs::read_to_string(evil_run(&r).join("attacks.log")).unwrap_or_default();
    for a in ATTACKS {
        assert!(attacks.contains(&format!("{a} denied")), "{a} was not denied:\n{attacks}\n{}", stderr(&out));
    }
    let errors = std::fs::read_to_string(evil_run(&r).join("attack-errors.log")).unwrap_or_default();
    assert!(errors.contains("Permission denied"), "{errors}");
    // An ordinary commit works under the sandbox.
    assert!(attacks.contains("commit ok"), "{attacks}");
    assert_eq!(protected_state(&r), before, "something outside the worktree changed");
    assert_no_secret_seen(&log);
    // Reading /proc/<dispatcher>/environ is attempted too: Linux normally refuses it (the
    // dispatcher is non-dumpable, the agent has no CAP_SYS_PTRACE, Landlock forbids ptrace
    // access to processes outside the sandbox), but this project's machines allow it; README
    // "Security model" says so, and the outcome is not asserted here.
    // The landing gate refuses the work (claims, protected verify.sh and .gitattributes, token).
    assert_code(&out, 1);
    assert_eq!(r.rev("main"), main_before, "the hostile work landed");
    let rec = evil_record(&r);
    assert_eq!(rec["state"], "failed", "{rec}");
    let why = rec["failure"].as_str().unwrap_or_default();
    assert!(why.contains("outside.txt") && why.contains("verify.sh"), "{why}");
    assert!(!why.contains("ghp_abcdef"), "the note must not print the token: {why}");
    // The tampering attempts all failed: nothing to restore.
    assert!(!evil_run(&r).join("tampered").exists());
}

#[test]
fn hostile_agent_without_sandbox_is_caught_restored_and_failed() {
    let (r, log) = hostile_repo("off");
    let before: Vec<_> = protected_state(&r).into_iter().filter(|(p, _)| !p.ends_with("pwned.txt")).collect();
    let main_before = r.rev("main");
    let out = hybrid_with_secrets(&r, &r.root, &["dispatch"], &[]);
    let attacks = std::fs::read_to_string(evil_run(&r).join("attacks.log")).unwrap_or_default();
    // Without the sandbox the writes succeed...
    for a in ["hook-pre-commit", "fsmonitor", "filter", "gpg", "hybrid-toml", "info-exclude"] {
        assert!(attacks.contains(&format!("{a} ok")), "{a}:\n{attacks}");
    }
    // ...and are all restored byte for byte after the run.
    let after: Vec<_> = protected_state(&r).into_iter().filter(|(p, _)| !p.ends_with("pwned.txt")).collect();
    // verify.sh in the main checkout is not watched: only hybrid.toml is (see the contract).
    let watched = |v: &[(PathBuf, Option<Vec<u8>>)]| -> Vec<(PathBuf, Option<Vec<u8>>)> {
        v.iter().filter(|(p, _)| !p.ends_with("verify.sh")).cloned().collect()
    };
    assert_eq!(watched(&after), watched(&before), "tampering was not restored");
    let config = std::fs::read_to_string(r.root.join(".git/config")).unwrap();
    assert!(!config.contains("fsmonitor") && !config.contains("evil") && !config.contains("gpg"), "{config}");
    // The changed versions are kept as evidence.
    assert!(evil_run(&r).join("tampered/.git/hooks/pre-commit").is_file());
    assert!(evil_run(&r).join("tampered/hybrid.toml").is_file());
    // No planted program ever ran with a secret (only the agent's own git ran them).
    assert_no_secret_seen(&log);
    // The task failed, naming each tampered path; nothing landed.
    assert_code(&out, 1);
    assert_eq!(r.rev("main"), main_before);
    let rec = evil_record(&r);
    assert_eq!(rec["state"], "failed", "{rec}");
    let why = rec["failure"].as_str().unwrap_or_default();
    for p in [".git/config", ".git/hooks/pre-commit", ".git/hooks/post-checkout", ".git/info/exclude", "hybrid.toml"] {
        assert!(why.contains(p), "{p} is not named: {why}");
    }
    let status = r.hybrid_ok(&["status"]);
    assert!(status.contains("tamper"), "status does not show it: {status}");
}

#[test]
fn agents_die_with_a_killed_dispatcher() {
    let r = TestRepo::new();
    r.write(
        "agent.sh",
        "sleep 300 &\necho $! > \"$HYBRID_RUN_DIR/child.pid\"\necho $$ > \"$HYBRID_RUN_DIR/agent.pid\"\nwait\n",
    );
    r.write(
        "hybrid.toml",
        "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\n\n[[task]]\nid = \"t1\"\nprompt = \"p\"\n",
    );
    r.commit_all("setup");
    let mut dispatcher = r
        .hybrid_cmd(&r.root, &["dispatch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let run = r.root.join(".git/hybrid/runs/t1/1/1");
    let read_pid = |f: &str| std::fs::read_to_string(run.join(f)).ok().and_then(|s| s.trim().parse::<i32>().ok());
    let mut pids = None;
    for _ in 0..1200 {
        if let (Some(a), Some(c)) = (read_pid("agent.pid"), read_pid("child.pid")) {
            pids = Some((a, c));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (agent, child) = pids.expect("the agent never started");
    assert!(alive(agent) && alive(child));
    common::kill_9(&mut dispatcher);
    // Wait (without a time limit on the outcome: a generous bound only keeps a broken build from hanging).
    for _ in 0..1200 {
        if !alive(agent) && !alive(child) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!alive(agent), "the agent outlived its dispatcher");
    assert!(!alive(child), "the agent's child outlived the dispatcher");
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn an_unknown_sandbox_value_is_bad_input() {
    let r = TestRepo::new();
    r.write(
        "hybrid.toml",
        "[agent]\ncommand = [\"true\"]\nsandbox = \"chroot\"\n\n[[task]]\nid = \"t1\"\nprompt = \"p\"\n",
    );
    r.commit_all("setup");
    let out = r.hybrid(&["dispatch"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("sandbox"), "{}", stderr(&out));
}
