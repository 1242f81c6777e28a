//! The shell side of git-hybrid: `install.sh` with its man pages (`git hybrid --help`,
//! `git help hybrid`), completions in a real bash, and the `cd` helper of `shell-init`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_code, assert_ok, stderr, stdout, TestRepo};

const BIN: &str = env!("CARGO_BIN_EXE_git-hybrid");

/// A `cargo` stand-in for install.sh: its "release build" is a copy of the binary the tests
/// built (a real release build takes minutes); everything else install.sh does runs for real.
fn fake_cargo(dir: &Path) -> PathBuf {
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\n[ \"$1\" = build ] || exit 1\nmkdir -p \"$CARGO_TARGET_DIR/release\" && cp '{BIN}' \"$CARGO_TARGET_DIR/release/git-hybrid\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn install_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh")
}

/// Runs install.sh into `prefix`; returns PATH with the installed bin folder first.
fn install(r: &TestRepo, prefix: &Path) -> String {
    let fakebin = fake_cargo(&r.base());
    let path = format!("{}:{}", fakebin.display(), std::env::var("PATH").unwrap());
    let mut cmd = Command::new("bash");
    cmd.arg(install_sh()).current_dir(&r.root);
    r.env(&mut cmd);
    cmd.env("PATH", &path).env("PREFIX", prefix).env("CARGO_TARGET_DIR", r.base().join("target"));
    let out = cmd.output().unwrap();
    assert_ok(&out, &["install.sh"]);
    format!("{}:{path}", prefix.join("bin").display())
}

#[test]
fn install_puts_a_man_page_per_command_where_git_help_finds_it() {
    let r = TestRepo::new();
    let prefix = r.base().join("prefix");
    let path = install(&r, &prefix);
    let man1 = prefix.join("share/man/man1");
    assert!(prefix.join("bin/git-hybrid").is_file());
    for page in
        ["git-hybrid", "git-hybrid-merge", "git-hybrid-status", "git-hybrid-hooks-install", "git-hybrid-completions"]
    {
        let text = std::fs::read_to_string(man1.join(format!("{page}.1"))).unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(text.contains(&format!(".TH {page} 1")), "{page}: {text}");
        assert!(text.contains(".SH \"EXIT STATUS\""), "{page}: {text}");
    }
    // Hidden commands get no page; the pages name the options of their command.
    assert!(!man1.join("git-hybrid-__man.1").exists());
    let merge = std::fs::read_to_string(man1.join("git-hybrid-merge.1")).unwrap();
    for opt in ["\\-\\-keep", "\\-\\-allow\\-unclaimed", "\\-\\-wait", "\\-\\-json"] {
        assert!(merge.contains(opt), "{opt} missing: {merge}");
    }
    let top = std::fs::read_to_string(man1.join("git-hybrid.1")).unwrap();
    assert!(top.contains("git\\-hybrid\\-merge(1)"), "{top}");

    // man finds them, and `git hybrid --help` (git's `git help hybrid`) shows the page.
    let manpath = prefix.join("share/man");
    let mut man = Command::new("man");
    man.args(["-w", "git-hybrid-merge"]).env("MANPATH", &manpath);
    let out = man.output().expect("man is installed (man-db)");
    assert_ok(&out, &["man", "-w"]);
    assert_eq!(stdout(&out).trim(), man1.join("git-hybrid-merge.1").display().to_string());
    for args in [&["hybrid", "--help"][..], &["help", "hybrid"], &["help", "-m", "hybrid"]] {
        let mut git = Command::new("git");
        git.args(args).current_dir(&r.root);
        r.env(&mut git);
        git.env("PATH", &path)
            .env("MANPATH", &manpath)
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "100");
        let out = git.output().unwrap();
        assert_ok(&out, &["git"]);
        // Words only: man justifies lines with extra spaces.
        let text = stdout(&out).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(text.contains("git-hybrid - The git layer for running many AI coding agents"), "{args:?}: {text}");
        assert!(text.contains("git-hybrid-merge(1)") && text.contains("EXIT STATUS"), "{args:?}: {text}");
    }
    // Installing again replaces the files.
    install(&r, &prefix);
    assert!(man1.join("git-hybrid-merge.1").is_file());
}

#[test]
fn man_into_a_file_is_bad_input() {
    let r = TestRepo::new();
    let file = r.base().join("file");
    std::fs::write(&file, "x").unwrap();
    let out = r.hybrid(&["--json", "__man", file.to_str().unwrap()]);
    assert_code(&out, 2);
    let doc: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert!(doc["error"].as_str().unwrap().contains("not a directory"), "{doc}");
    let dir = r.base().join("pages");
    let doc = r.hybrid_json(&["__man", dir.to_str().unwrap()]);
    assert!(doc["pages"].as_array().unwrap().len() > 15, "{doc}");
    assert!(dir.join("git-hybrid-verify.1").is_file());
}

/// Runs `script` in a real interactive bash (no rc files) in the main checkout, with the
/// completions of `git-hybrid completions bash` loaded (and git's own completion first, when
/// the machine has it), and the test binary's folder on PATH.
fn bash_with_completions(r: &TestRepo, script: &str) -> String {
    let script_file = r.base().join("completions.bash");
    let out = r.hybrid(&["completions", "bash"]);
    assert_ok(&out, &["completions", "bash"]);
    std::fs::write(&script_file, stdout(&out)).unwrap();
    let prelude = format!(
        r#"
[ -f /usr/share/bash-completion/completions/git ] && source /usr/share/bash-completion/completions/git
source '{}'
# Completes the words given as if TAB was pressed after the last one (COMP_* as bash sets them),
# through the function `complete -p` registered for the first word.
tab() {{
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}; COMP_TYPE=9; COMPREPLY=()
    local fn; fn=$(complete -p "$1" | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
    "$fn" "$1" "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
    echo "[$*] ${{COMPREPLY[*]}}"
}}
"#,
        script_file.display()
    );
    let bindir = Path::new(BIN).parent().unwrap();
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-i", "-c", &format!("{prelude}\n{script}")]).current_dir(&r.root);
    r.env(&mut cmd);
    cmd.env("PATH", format!("{}:{}", bindir.display(), std::env::var("PATH").unwrap()));
    let out = cmd.output().unwrap();
    assert_ok(&out, &["bash", "-i"]);
    stdout(&out)
}

/// The candidates printed by `tab` for the line `[words]`.
fn candidates(out: &str, words: &str) -> Vec<String> {
    let head = format!("[{words}]");
    let line = out.lines().find(|l| l.starts_with(&head)).unwrap_or_else(|| panic!("no {head} in {out}"));
    line[head.len()..].split_whitespace().map(String::from).collect()
}

#[test]
fn bash_completes_every_level_and_task_ids() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "fix-login"]);
    r.hybrid_ok(&["start", "feat"]);
    r.hybrid_ok(&["start", "other"]);
    let out = bash_with_completions(
        &r,
        "complete -p git-hybrid\n\
         tab git-hybrid ''\n\
         tab git-hybrid hooks ''\n\
         tab git-hybrid merge --\n\
         tab git-hybrid merge ''\n\
         tab git-hybrid merge f\n\
         tab git-hybrid status fix-login o\n\
         tab git-hybrid clean --mer\n",
    );
    assert!(out.contains("-F _clap_complete_git_hybrid git-hybrid"), "{out}");
    let top = candidates(&out, "git-hybrid ");
    for c in ["merge", "status", "hooks", "completions", "--json"] {
        assert!(top.contains(&c.to_string()), "{c}: {top:?}");
    }
    assert!(!top.iter().any(|c| c.starts_with("__")), "hidden commands are not offered: {top:?}");
    assert_eq!(candidates(&out, "git-hybrid hooks ")[..4], ["install", "uninstall", "status", "doctor"]);
    let opts = candidates(&out, "git-hybrid merge --");
    for c in ["--keep", "--target", "--allow-unclaimed", "--wait", "--json"] {
        assert!(opts.contains(&c.to_string()), "{c}: {opts:?}");
    }
    assert!(opts.iter().all(|c| c.starts_with("--")), "{opts:?}");
    let ids = candidates(&out, "git-hybrid merge ");
    for c in ["feat", "fix-login", "other"] {
        assert!(ids.contains(&c.to_string()), "{c}: {ids:?}");
    }
    assert_eq!(candidates(&out, "git-hybrid merge f"), ["feat", "fix-login"]);
    assert_eq!(candidates(&out, "git-hybrid status fix-login o"), ["other"]);
    assert_eq!(candidates(&out, "git-hybrid clean --mer"), ["--merged"]);
}

#[test]
fn bash_completes_git_hybrid_through_gits_completion() {
    if !Path::new("/usr/share/bash-completion/completions/git").exists() {
        panic!("git's bash completion (/usr/share/bash-completion/completions/git, from the git package) is missing");
    }
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "fix-login"]);
    let out = bash_with_completions(
        &r,
        "tab git hybrid hooks ''\n\
         tab git hybrid merge --ke\n\
         tab git -C . hybrid --json merge fi\n",
    );
    assert_eq!(candidates(&out, "git hybrid hooks ")[..4], ["install", "uninstall", "status", "doctor"]);
    assert_eq!(candidates(&out, "git hybrid merge --ke"), ["--keep"]);
    assert_eq!(candidates(&out, "git -C . hybrid --json merge fi"), ["fix-login"]);
}

/// zsh and fish scripts call the binary back the same way; their protocol, answered by the
/// binary: candidates with the task's state (fish: TAB-separated, zsh: `value:help`).
#[test]
fn zsh_and_fish_scripts_ask_the_binary_for_task_ids() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "fix-login"]);
    let fish = r.hybrid_ok(&["completions", "fish"]);
    assert!(fish.contains("complete --keep-order --exclusive --command git-hybrid"), "{fish}");
    assert!(fish.contains("--command git --condition '__fish_seen_subcommand_from hybrid'"), "{fish}");
    let zsh = r.hybrid_ok(&["completions", "zsh"]);
    assert!(
        zsh.contains("compdef _clap_dynamic_completer_git_hybrid git-hybrid") && zsh.contains("_git-hybrid()"),
        "{zsh}"
    );

    let ask = |shell: &str, words: &[&str], index: usize| {
        let mut cmd = r.hybrid_cmd(&r.root, &["--", "git-hybrid"]);
        cmd.args(words).env("GIT_HYBRID_COMPLETE", shell).env("_CLAP_COMPLETE_INDEX", index.to_string());
        let out = cmd.output().unwrap();
        assert_ok(&out, &["complete", shell]);
        stdout(&out)
    };
    assert_eq!(ask("fish", &["merge", "f"], 2).trim(), "fix-login\tready");
    assert_eq!(ask("zsh", &["sync", "f"], 2).trim(), "fix-login:ready");
    let hooks = ask("fish", &["hooks", ""], 2);
    assert!(hooks.lines().any(|l| l.starts_with("doctor\t")), "{hooks}");
    // Outside a repository task ids complete to nothing, and nothing fails.
    let outside = r.base().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    let mut cmd = r.hybrid_cmd(&outside, &["--", "git-hybrid", "merge", ""]);
    cmd.env("GIT_HYBRID_COMPLETE", "fish");
    let out = cmd.output().unwrap();
    assert_ok(&out, &["complete outside"]);
    assert!(stdout(&out).lines().all(|l| l.starts_with('-')), "{}", stdout(&out));
}

#[test]
fn shell_init_bash_changes_to_a_task_worktree_and_completes_ids() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "fix-login"]);
    r.hybrid_ok(&["start", "feat"]);
    let out = bash_with_completions(
        &r,
        "eval \"$(git-hybrid shell-init bash)\"\n\
         complete -p hcd\n\
         tab hcd f\n\
         tab hcd fi\n\
         hcd fix-login && echo \"now in $PWD\"\n\
         hcd && echo \"back in $PWD\"\n\
         hcd nope || echo \"refused with $?\"\n",
    );
    assert!(out.contains("-F _git_hybrid_hcd_complete hcd"), "{out}");
    assert_eq!(candidates(&out, "hcd f"), ["feat", "fix-login"]);
    assert_eq!(candidates(&out, "hcd fi"), ["fix-login"]);
    assert!(out.contains(&format!("now in {}", r.task_dir("fix-login").display())), "{out}");
    assert!(out.contains(&format!("back in {}", r.root.display())), "{out}");
    assert!(out.contains("refused with 2"), "{out}");
}
