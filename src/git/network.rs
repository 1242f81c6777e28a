//! `git fetch` / `git push` children: the hardened builder plus what talking to a server needs.
//!
//! Contract: [`command`] is [`super::command`] (scrubbed environment, no hooks, no planted filter
//! drivers) with two additions, and every git child that reaches a remote is built by it:
//! - **The user's network environment passes through** ([`NETWORK_ENV`]): the ssh agent socket,
//!   proxy and CA-bundle variables, askpass programs and the token variables that credential
//!   helpers such as `gh auth git-credential` read. Nothing else of the host's environment does.
//! - **No program named by the repository's own config runs** (an agent can write that config):
//!   - `credential.helper` (and `credential.<url>.helper`): the list is reset (`-c
//!     credential.helper=`) and the helpers of the user's system/global config are replayed in
//!     their order, so only those run;
//!   - `core.sshCommand`: `GIT_SSH_COMMAND` is always set (it beats the config): the user's own,
//!     else the trusted `core.sshCommand`, else the user's `GIT_SSH`, else `ssh`;
//!   - `core.gitProxy`: `GIT_PROXY_COMMAND` is always set (it beats the config; empty = none);
//!   - `core.askPass`: set to the trusted value or empty (the user's `GIT_ASKPASS` beats it);
//!   - `core.alternateRefsCommand`: the trusted value or empty;
//!   - `protocol.ext.allow=never` (an `ext::` URL runs a shell command);
//!   - `remote.<name>.uploadpack` / `receivepack` (run on this machine for a local or `file://`
//!     remote): callers pass [`upload_pack`] / [`receive_pack`] as explicit options, which beat
//!     the config (a `-c` does not: git takes the first of several values).

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result};

/// Variables a fetch or push needs from the user's environment (ssh agent, proxies, CA bundles,
/// askpass, credential helpers' tokens). Read from the environment git-hybrid was started in,
/// never from a file an agent writes.
pub const NETWORK_ENV: &[&str] = &[
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "SSH_ASKPASS",
    "SSH_ASKPASS_REQUIRE",
    "DISPLAY",
    "GIT_ASKPASS",
    "GIT_SSH_VARIANT",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "GIT_SSL_CERT",
    "GIT_SSL_KEY",
    "GIT_SSL_NO_VERIFY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "KRB5CCNAME",
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "GH_ENTERPRISE_TOKEN",
    "GITLAB_TOKEN",
];

/// A `git` command for `dir` that may talk to a remote (see the module contract).
pub fn command(dir: &Path) -> Command {
    let mut cmd = super::command(dir);
    for (k, v) in network_env() {
        cmd.env(k, v);
    }
    for setting in config_overrides() {
        cmd.arg("-c").arg(setting);
    }
    cmd
}

/// Runs `git <args>` in `dir` through [`command`] and returns the raw output whatever the exit
/// status.
pub fn output(dir: &Path, args: &[String]) -> Result<Output> {
    command(dir).args(args).output().with_context(|| format!("cannot run git {}", args.join(" ")))
}

/// `--upload-pack=<program>` for a fetch from `remote`: the trusted config's
/// `remote.<remote>.uploadpack`, else git's default.
pub fn upload_pack(remote: &str) -> String {
    let program = trusted_value(&format!("remote.{remote}.uploadpack")).unwrap_or_else(|| "git-upload-pack".into());
    format!("--upload-pack={program}")
}

/// `--receive-pack=<program>` for a push to `remote` (see [`upload_pack`]).
pub fn receive_pack(remote: &str) -> String {
    let program = trusted_value(&format!("remote.{remote}.receivepack")).unwrap_or_else(|| "git-receive-pack".into());
    format!("--receive-pack={program}")
}

/// The environment added to the scrubbed one: [`NETWORK_ENV`] as set here, `GIT_SSH_COMMAND`
/// and `GIT_PROXY_COMMAND`.
fn network_env() -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> =
        NETWORK_ENV.iter().filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v))).collect();
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let ssh = env("GIT_SSH_COMMAND")
        .or_else(|| trusted_value("core.sshCommand").map(OsString::from))
        .or_else(|| env("GIT_SSH").map(|p| OsString::from(shell_quote(&p.to_string_lossy()))))
        .unwrap_or_else(|| "ssh".into());
    out.push(("GIT_SSH_COMMAND".into(), ssh));
    out.push(("GIT_PROXY_COMMAND".into(), std::env::var_os("GIT_PROXY_COMMAND").unwrap_or_default()));
    out
}

/// `-c` settings that replace what the repository's config could name (module contract).
fn config_overrides() -> Vec<String> {
    let mut out = vec![
        "protocol.ext.allow=never".to_string(),
        format!("core.askPass={}", trusted_value("core.askPass").unwrap_or_default()),
        format!("core.alternateRefsCommand={}", trusted_value("core.alternateRefsCommand").unwrap_or_default()),
        "credential.helper=".to_string(),
    ];
    for (key, value) in super::trusted_entries(Some(r"^credential\..*helper$")) {
        out.push(format!("{key}={value}"));
    }
    out
}

/// The last value of `key` (case-insensitive) in the user's system/global config.
fn trusted_value(key: &str) -> Option<String> {
    super::trusted_entries(None).into_iter().rev().find(|(name, _)| name.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// `s` single-quoted for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("/opt/my ssh"), "'/opt/my ssh'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn the_credential_list_is_reset_before_trusted_helpers() {
        let o = config_overrides();
        let reset = o.iter().position(|s| s == "credential.helper=").expect("reset");
        assert!(o.iter().skip(reset + 1).all(|s| s.starts_with("credential.")));
        assert!(o.contains(&"protocol.ext.allow=never".to_string()));
    }
}
