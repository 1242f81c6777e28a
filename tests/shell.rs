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
