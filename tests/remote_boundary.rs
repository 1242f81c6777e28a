//! The agent boundary on the network path: a fetch or push git-hybrid starts gets the user's
//! ssh/proxy environment and credential helpers, never a program the repository's config names
//! (an agent can write that config), and never the host's secrets.
//!
//! The ssh "server" is a stand-in ssh program (what `GIT_SSH_COMMAND` names) that runs the
//! remote command on this machine, as sshd would on the server; HTTP is the real
//! `git http-backend` of `tests/common/server.rs` with basic authentication.

mod common;

use std::path::{Path, PathBuf};

use common::server::{GitServer, Kind};
use common::TestRepo;

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    common::write_file(path, &format!("#!/bin/sh\n{body}\n"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Plants, in the repository's own config, every network program an agent could name; each
/// touches `<marker dir>/<key>` when it runs. Returns the marker folder.
fn plant_programs(repo: &TestRepo) -> PathBuf {
    let markers = repo.base().join("planted-ran");
    std::fs::create_dir_all(&markers).unwrap();
    let bin = repo.base().join("agent-bin");
    for key in ["sshCommand", "askPass", "gitProxy", "uploadpack", "receivepack", "credential", "alternateRefs"] {
        script(&bin.join(key), &format!("touch '{}/{key}'\nexit 1", markers.display()));
    }
    let p = |k: &str| bin.join(k).display().to_string();
    for (key, value) in [
        ("core.sshCommand", p("sshCommand")),
        ("core.askPass", p("askPass")),
        ("core.gitProxy", p("gitProxy")),
        ("remote.origin.uploadpack", p("uploadpack")),
        ("remote.origin.receivepack", p("receivepack")),
        ("credential.helper", format!("!{}", p("credential"))),
        ("core.alternateRefsCommand", p("alternateRefs")),
        ("protocol.ext.allow", "always".into()),
    ] {
        repo.git(&["config", key, &value]);
    }
    markers
}

fn ran(markers: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(markers).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A bare repository at `<base>/server.git` holding `main`, reached as `ssh://git-host/<path>`
/// through `fake-ssh`, which logs the environment it was given to `<base>/ssh.log` and runs the
/// remote command locally. Returns the path of the fake ssh program.
fn ssh_remote(repo: &TestRepo) -> PathBuf {
    let bare = repo.base().join("server.git");
    repo.git_in(&repo.base(), &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()]);
    repo.git(&["remote", "add", "origin", bare.to_str().unwrap()]);
    repo.git(&["push", "-q", "-u", "origin", "main"]);
    repo.git(&["remote", "set-url", "origin", &format!("ssh://git-host{}", bare.display())]);
    let ssh = repo.base().join("bin").join("fake-ssh");
    let log = repo.base().join("ssh.log");
    script(
        &ssh,
        &format!(
            "echo \"sock=$SSH_AUTH_SOCK proxy=$HTTPS_PROXY secret=${{AWS_SECRET_ACCESS_KEY:-none}}\" >> '{}'\n\
             for last; do :; done\nexec sh -c \"$last\"",
            log.display()
        ),
    );
    ssh
}

#[test]
fn a_landing_over_ssh_gets_the_users_ssh_environment_and_runs_nothing_the_repository_names() {
    let repo = TestRepo::new();
    let ssh = ssh_remote(&repo);
    let markers = plant_programs(&repo);
    repo.task_with_commit("t1", "a.txt");

    let out = repo
        .hybrid_cmd(&repo.root, &["--json", "merge", "t1"])
        .env("GIT_SSH_COMMAND", &ssh)
        .env("SSH_AUTH_SOCK", "/run/user/agent.sock")
        .env("HTTPS_PROXY", "http://proxy.example:3128")
        .env("AWS_SECRET_ACCESS_KEY", "s3cr3t")
        .output()
        .unwrap();
    common::assert_ok(&out, &["merge over ssh"]);
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sha = rep["merge_sha"].as_str().unwrap();
    let bare = repo.base().join("server.git");
    assert_eq!(repo.git_in(&bare, &["rev-parse", "main"]), sha, "the squash was pushed over ssh");
    assert_eq!(ran(&markers), Vec::<String>::new(), "a program named by the repository's config ran");
    let log = std::fs::read_to_string(repo.base().join("ssh.log")).unwrap();
    assert!(log.lines().count() >= 2, "fetch and push both went through the user's ssh: {log}");
    for line in log.lines() {
        assert_eq!(line, "sock=/run/user/agent.sock proxy=http://proxy.example:3128 secret=none");
    }

    // `git hybrid fetch` goes the same way.
    let out = repo.hybrid_cmd(&repo.root, &["fetch"]).env("GIT_SSH_COMMAND", &ssh).output().unwrap();
    common::assert_ok(&out, &["fetch over ssh"]);
    assert_eq!(ran(&markers), Vec::<String>::new());
}

#[test]
fn without_git_ssh_command_the_users_global_ssh_command_is_used_not_the_repositorys() {
    let repo = TestRepo::new();
    let ssh = ssh_remote(&repo);
    let markers = plant_programs(&repo);
    // The user's own config (GIT_CONFIG_GLOBAL) names the ssh program.
    std::fs::write(&repo.empty_config, format!("[core]\n\tsshCommand = {}\n", ssh.display())).unwrap();
    repo.task_with_commit("t1", "a.txt");
    let out = repo.hybrid(&["merge", "t1"]);
    common::assert_ok(&out, &["merge with the global core.sshCommand"]);
    assert_eq!(ran(&markers), Vec::<String>::new(), "the repository's core.sshCommand ran");
    assert!(std::fs::read_to_string(repo.base().join("ssh.log")).unwrap().contains("secret=none"));
}

#[test]
fn a_local_remote_runs_gits_own_upload_and_receive_pack_not_the_planted_ones() {
    let repo = TestRepo::new();
    let bare = repo.base().join("server.git");
    repo.git_in(&repo.base(), &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()]);
    repo.git(&["remote", "add", "origin", bare.to_str().unwrap()]);
    repo.git(&["push", "-q", "-u", "origin", "main"]);
    let markers = plant_programs(&repo);
    repo.task_with_commit("t1", "a.txt");
    let rep = repo.hybrid_json(&["merge", "t1"]);
    assert_eq!(repo.git_in(&bare, &["rev-parse", "main"]), rep["merge_sha"].as_str().unwrap());
    assert_eq!(ran(&markers), Vec::<String>::new(), "a planted upload-pack/receive-pack ran on this machine");
}

#[test]
fn over_authenticated_http_only_the_users_credential_helper_is_asked() {
    let repo = TestRepo::new();
    let server = GitServer::start(&repo, Kind::Http);
    repo.publish_to(&server);
    server.require_basic_auth("alice", "pa55");
    let markers = plant_programs(&repo);
    // The user's helper (global config) answers from the token in the user's environment.
    let helper = repo.base().join("bin").join("token-helper");
    script(&helper, "test \"$1\" = get || exit 0\necho username=alice\necho \"password=$GITLAB_TOKEN\"");
    std::fs::write(&repo.empty_config, format!("[credential]\n\thelper = {}\n", helper.display())).unwrap();
    repo.task_with_commit("t1", "a.txt");

    let out = repo.hybrid_cmd(&repo.root, &["--json", "merge", "t1"]).env("GITLAB_TOKEN", "pa55").output().unwrap();
    common::assert_ok(&out, &["merge over authenticated HTTP"]);
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(server.rev(&repo, "main").as_deref(), rep["merge_sha"].as_str());
    assert_eq!(ran(&markers), Vec::<String>::new(), "the repository's credential helper was asked");
}

#[test]
fn over_git_protocol_a_planted_proxy_command_does_not_run() {
    let repo = TestRepo::new();
    let server = GitServer::start(&repo, Kind::Daemon);
    repo.publish_to(&server);
    let markers = plant_programs(&repo);
    repo.task_with_commit("t1", "a.txt");
    let rep = repo.hybrid_json(&["merge", "t1"]);
    assert_eq!(server.rev(&repo, "main").as_deref(), rep["merge_sha"].as_str());
    assert_eq!(ran(&markers), Vec::<String>::new(), "the repository's core.gitProxy ran");
}
