//! `hybrid.toml`: the optional project configuration at the repository root.
//!
//! Contract: every setting has a default, so a repository with no `hybrid.toml` works. A file
//! that is malformed, has an unknown key or a value of the wrong type is rejected as a whole
//! with `file:line:col` and a plain-words reason ([`HybridError::Config`], exit 2) before
//! anything is changed. `[[task]]` entries are parsed here with their spans; the dispatch plan
//! validates them further (see `plan`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use toml::Spanned;

use crate::error::{config_error, HybridError};

/// The file name looked up at the repository root.
pub const FILE_NAME: &str = "hybrid.toml";

/// The most agents (and `-j`/`--jobs` workers) any command runs at once.
pub const MAX_CONCURRENCY: usize = 256;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub project: ProjectConfig,
    #[serde(default)]
    pub agent: AgentConfig,
    #[serde(default)]
    pub verify: VerifyConfig,
    #[serde(default)]
    pub hooks: HooksConfig,
    #[serde(default)]
    pub export: ExportConfig,
    #[serde(default)]
    pub land: LandConfig,
    #[serde(default)]
    pub worktree: WorktreeConfig,
    /// The dispatch plan; see `plan` for its validation.
    #[serde(default, rename = "task")]
    pub tasks: Vec<Spanned<TaskSpec>>,
}

/// `[project]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Branch tasks start from and land on (default: the repository's default branch).
    pub target: Option<String>,
    /// Where task worktrees live, relative to the repository root (default: sibling `<repo>.hybrid/`).
    pub worktree_root: Option<PathBuf>,
    /// How many agents dispatch runs at once (default: 4).
    pub concurrency: Option<usize>,
    /// Folder whose sub-folders `shape = "plugin"` tasks claim (default: `src/plugins`).
    pub plugin_root: Option<String>,
    /// The remote landings go through (default: the target branch's upstream remote; `""`:
    /// none, land locally). See [`crate::remote`].
    pub remote: Option<String>,
}

/// `[agent]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The agent's argv, e.g. `["claude", "-p", "--output-format", "stream-json", "--verbose"]`.
    pub command: Option<Vec<String>>,
    /// Extra environment variable names passed through to agents.
    #[serde(default)]
    pub env_pass: Vec<String>,
    /// How long one agent run may take: seconds, or a duration such as `"30m"`.
    pub timeout: Option<DurationSetting>,
    /// `"landlock"` (the default, where the kernel supports it) or `"off"`.
    pub sandbox: Option<String>,
    /// Extra paths agents may write under the sandbox (`~/` is `HOME`, relative is the checkout).
    #[serde(default)]
    pub allow_write: Vec<String>,
}

/// `[verify]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// The command run in a task worktree before landing.
    pub command: Option<CommandSetting>,
    /// Merge commits allowed on the target by `git hybrid verify`.
    #[serde(default)]
    pub allow_merge_commits: bool,
}

/// `[hooks]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Run the pre-commit checks outside task worktrees too.
    #[serde(default)]
    pub everywhere: bool,
    /// Literal strings or regexes of known false positives the secret scan lets pass.
    #[serde(default)]
    pub allow_secrets: Vec<String>,
    /// Do not check staged paths against task claims.
    #[serde(default)]
    pub no_claims: bool,
}

/// `[land]`: the landing gate (see `gate`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandConfig {
    /// Globs of paths, besides the built-in ones, that a task may change only when its claims
    /// name them explicitly.
    #[serde(default)]
    pub protected: Vec<String>,
}

/// `[worktree]`: what a new task worktree gets besides the checkout of its base.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorktreeConfig {
    /// Files or folders (relative to the main checkout; usually ignored ones such as `.env`)
    /// copied from the main checkout into each new worktree (see `crate::seed`).
    #[serde(default)]
    pub copy: Vec<String>,
    /// A command run in each new worktree before its first agent run (`dispatch`).
    pub setup: Option<CommandSetting>,
    /// How long `setup` may take (default 10 minutes).
    pub setup_timeout: Option<DurationSetting>,
}

/// `[export]`: training-record export is opt-in through two flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub acknowledged_terms: bool,
    /// Extra redaction regexes applied at export time.
    #[serde(default)]
    pub redact: Vec<String>,
}

/// A command given as an argv list, or as one string run by `sh -c`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CommandSetting {
    Argv(Vec<String>),
    Shell(String),
}

impl CommandSetting {
    /// The argv to run.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandSetting::Argv(v) => v.clone(),
            CommandSetting::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
        }
    }
}

/// A duration given as seconds or as a string such as `"90s"`, `"30m"`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum DurationSetting {
    Seconds(u64),
    Text(String),
}

impl DurationSetting {
    pub fn to_duration(&self) -> std::result::Result<Duration, String> {
        match self {
            DurationSetting::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationSetting::Text(t) => humantime::parse_duration(t).map_err(|e| format!("bad duration {t:?}: {e}")),
        }
    }
}

/// Task shapes used by the scheduler.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Claims `<plugin_root>/<plugin>/**`; many run in parallel.
    Plugin,
    /// Must list `touches`; at most one core task runs at a time.
    Core,
}

/// One `[[task]]` entry of a plan.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub id: Spanned<String>,
    pub title: Option<String>,
    pub prompt: Option<String>,
    pub prompt_file: Option<Spanned<String>>,
    pub shape: Option<Shape>,
    pub plugin: Option<Spanned<String>>,
    #[serde(default)]
    pub touches: Vec<Spanned<String>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub priority: i64,
    pub attempts: Option<Spanned<u32>>,
    #[serde(default)]
    pub retries: u32,
    /// Per-task agent argv override.
    pub agent: Option<Vec<String>>,
    /// Per-task verify command override.
    pub verify: Option<CommandSetting>,
    /// Patch file (path in the repository) for the `builtin:patch` agent.
    pub patch: Option<String>,
    /// Per-task agent timeout override.
    pub timeout: Option<DurationSetting>,
    /// Base revision for the task's branch (default: the target tip).
    pub base: Option<String>,
}

/// A loaded configuration and where it came from.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file it was read from; `None` when defaults are used.
    pub path: Option<PathBuf>,
    /// The file's text, kept so later validation can turn spans into `file:line:col`.
    pub text: String,
}

impl LoadedConfig {
    /// A config error at a byte offset of this file.
    pub fn error_at(&self, offset: usize, message: impl Into<String>) -> HybridError {
        let path = self.path.clone().unwrap_or_else(|| PathBuf::from(FILE_NAME));
        config_error(&path, &self.text, offset, message)
    }
}

/// Reads `<root>/hybrid.toml` if it exists.
pub fn load(root: &Path) -> Result<LoadedConfig> {
    let path = root.join(FILE_NAME);
    match read_text(&path)? {
        Some(text) => parse(&path, &text),
        None => Ok(LoadedConfig::default()),
    }
}

/// Reads a configuration or plan file as text (`None` when it does not exist): a regular file
/// (symlinks followed) of at most [`crate::fsutil::MAX_CONFIG_BYTES`], valid UTF-8. Anything
/// else (a directory, a device such as a `hybrid.toml -> /dev/zero` a task landed, a huge file)
/// is bad input (exit 2) and nothing is read past the cap.
pub fn read_text(path: &Path) -> Result<Option<String>> {
    use crate::fsutil::{read_regular_capped, CappedReadError, MAX_CONFIG_BYTES};
    let bytes = match read_regular_capped(path, MAX_CONFIG_BYTES) {
        Ok(b) => b,
        Err(CappedReadError::NotFound) => return Ok(None),
        Err(CappedReadError::Io(e)) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        Err(e) => return Err(HybridError::Usage(format!("cannot read {}: {e}", path.display())).into()),
    };
    Ok(Some(utf8_text(path, bytes)?))
}

/// The text of a config or plan file; bytes that are not UTF-8 (TOML is UTF-8 only) are a
/// config error located at the first bad byte.
pub fn utf8_text(path: &Path, bytes: Vec<u8>) -> Result<String, HybridError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let good = String::from_utf8_lossy(&bytes[..at]).into_owned();
        let byte = bytes.get(at).copied().unwrap_or(0);
        config_error(
            path,
            &good,
            at,
            format!("the file is not valid UTF-8 (byte 0x{byte:02x} at offset {at}); TOML files must be UTF-8"),
        )
    })
}

/// Parses configuration text; errors carry `file:line:col`.
pub fn parse(path: &Path, text: &str) -> Result<LoadedConfig> {
    let config: Config = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let in_header = text.get(..offset).is_some_and(|b| b.trim_end_matches([' ', '\t']).ends_with('['));
        config_error(path, text, offset, plain_message(e.message(), in_header))
    })?;
    let loaded = LoadedConfig { config, path: Some(path.to_path_buf()), text: text.to_string() };
    check_values(&loaded)?;
    Ok(loaded)
}

/// Rewrites serde's and toml's wording into plain words (one line) where it helps.
/// `in_header`: the error points into a `[table]` header, so an unknown key there is a section.
fn plain_message(msg: &str, in_header: bool) -> String {
    let msg = msg.trim().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        let expected = rest.split_once("expected ").map(|(_, e)| e).unwrap_or("");
        let what = if in_header { format!("unknown section `[{key}]`") } else { format!("unknown key `{key}`") };
        if expected.is_empty() {
            return what;
        }
        let allowed = if in_header { "the sections allowed are" } else { "the keys allowed here are" };
        return format!("{what}; {allowed} {expected}");
    }
    let replacements = [
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected i64", "expected a whole number"),
        ("expected a sequence", "expected a list"),
        (
            "data did not match any variant of untagged enum CommandSetting",
            "expected a command: a list of strings (argv) or one string (run by sh -c)",
        ),
        (
            "data did not match any variant of untagged enum DurationSetting",
            "expected a duration: seconds (a number) or text such as \"30m\"",
        ),
    ];
    let mut out = msg;
    for (from, to) in replacements {
        out = out.replace(from, to);
    }
    out
}

/// Byte offset of `key = ...` inside `[section]` (`[[section]]` too), else of the section
/// header, else 0: where to point a value error that serde did not locate.
fn key_offset(text: &str, section: &str, key: &str) -> usize {
    let mut current = String::new();
    let mut header_at = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('[') {
            let name = trimmed.trim_start_matches('[');
            current = name.split(']').next().unwrap_or("").trim().to_string();
            if current == section && header_at.is_none() {
                header_at = Some(offset + indent);
            }
        } else if current == section {
            if let Some(after) = trimmed.strip_prefix(key) {
                if after.trim_start().starts_with('=') {
                    return offset + indent;
                }
            }
        }
        offset += line.len();
    }
    header_at.unwrap_or(0)
}

fn check_values(loaded: &LoadedConfig) -> Result<(), HybridError> {
    let c = &loaded.config;
    let at = |section: &str, key: &str| key_offset(&loaded.text, section, key);
    if c.project.concurrency == Some(0) {
        return Err(loaded.error_at(at("project", "concurrency"), "`concurrency` must be at least 1"));
    }
    if c.project.concurrency.is_some_and(|n| n > MAX_CONCURRENCY) {
        return Err(loaded.error_at(
            at("project", "concurrency"),
            format!("`concurrency` is at most {MAX_CONCURRENCY} (as `dispatch -j`)"),
        ));
    }
    if let Some(t) = &c.project.target {
        if !git2::Reference::is_valid_name(&format!("refs/heads/{t}")) {
            return Err(loaded.error_at(at("project", "target"), format!("`target` {t:?} is not a valid branch name")));
        }
    }
    if let Some(cmd) = &c.agent.command {
        if cmd.is_empty() {
            return Err(loaded.error_at(at("agent", "command"), "`[agent] command` must not be empty"));
        }
    }
    if let Some(t) = &c.agent.timeout {
        if let Err(e) = t.to_duration() {
            return Err(loaded.error_at(at("agent", "timeout"), e));
        }
    }
    if let Some(CommandSetting::Argv(v)) = &c.verify.command {
        if v.is_empty() {
            return Err(loaded.error_at(at("verify", "command"), "`[verify] command` must not be empty"));
        }
    }
    for g in &c.land.protected {
        if let Err(e) = globset::GlobBuilder::new(g.trim_start_matches("./")).literal_separator(true).build() {
            return Err(loaded.error_at(at("land", "protected"), format!("bad glob {g:?} in `[land] protected`: {e}")));
        }
    }
    for p in &c.worktree.copy {
        if let Err(why) = crate::seed::check_copy_path(p) {
            return Err(loaded.error_at(at("worktree", "copy"), format!("`[worktree] copy` entry {p:?}: {why}")));
        }
    }
    if let Some(CommandSetting::Argv(v)) = &c.worktree.setup {
        if v.is_empty() {
            return Err(loaded.error_at(at("worktree", "setup"), "`[worktree] setup` must not be empty"));
        }
    }
    if let Some(t) = &c.worktree.setup_timeout {
        if let Err(e) = t.to_duration() {
            return Err(loaded.error_at(at("worktree", "setup_timeout"), e));
        }
    }
    for r in &c.export.redact {
        if let Err(e) = regex::Regex::new(r) {
            return Err(loaded.error_at(at("export", "redact"), format!("bad redaction regex {r:?}: {e}")));
        }
    }
    Ok(())
}

/// The commented template `git hybrid init` writes.
pub const TEMPLATE: &str = r#"# hybrid.toml: configuration for git-hybrid (https://github.com/git-hybrid/git-hybrid).
# Every key is optional; the values shown in comments are the defaults.

[project]
# Branch tasks start from and land on (default: the repository's default branch).
# target = "main"
# Where task worktrees live, relative to this file (default: a sibling folder "<repo>.hybrid").
# worktree_root = "../myrepo.hybrid"
# How many agents `git hybrid dispatch` runs at once.
# concurrency = 4
# Folder whose sub-folders `shape = "plugin"` tasks claim.
# plugin_root = "src/plugins"
# Remote that landings are pushed to (one atomic, leased push per landing), with their ledger
# records (default: the target branch's upstream remote; "" lands locally only).
# remote = "origin"

[agent]
# The agent's argv; the prompt arrives on stdin, the working directory is the task worktree.
# command = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
# Environment variables passed to agents besides the safe allowlist (PATH, HOME, LANG, ...).
# env_pass = ["ANTHROPIC_API_KEY"]
# How long one agent run may take.
# timeout = "30m"

[verify]
# Run in the task worktree before landing; exit 0 means the task may land.
# command = ["cargo", "test"]
# Allow merge commits on the target in `git hybrid verify`.
# allow_merge_commits = false

[hooks]
# Run the pre-commit checks in every checkout, not only in task worktrees.
# everywhere = false
# Known false positives for the secret scan (literal text or regex).
# allow_secrets = []

[land]
# Paths a task may change only when its claims name them explicitly (besides hybrid.toml, CI
# workflows, .gitattributes, .gitmodules, hook folders and the files the verify command names).
# protected = ["deploy/**"]

[worktree]
# Files or folders copied from the main checkout into each new task worktree (ignored files the
# task needs; never a symlink; nothing already in the worktree is overwritten).
# copy = [".env"]
# A command run in each new worktree before its first agent run (sandboxed like agents; output
# in the run folder's setup/ folder).
# setup = "npm ci"
# setup_timeout = "10m"

[export]
# Training-record export is opt-in: both flags must be true for `git hybrid export`.
# You are responsible for the terms of the models whose output you export.
# enabled = false
# acknowledged_terms = false
# Extra redaction regexes applied at export time.
# redact = []

# The dispatch plan: one [[task]] per task.
# [[task]]
# id = "add-login"
# title = "Add a login page"
# prompt = "Add a login page under src/plugins/login"
# shape = "plugin"          # "plugin" (claims <plugin_root>/<plugin>/**), "core" (needs touches) or omitted
# plugin = "login"
# touches = ["src/plugins/login/**"]
# depends_on = []
# priority = 0
# attempts = 1              # best-of-K
# retries = 0
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<LoadedConfig> {
        parse(Path::new("hybrid.toml"), text)
    }

    #[test]
    fn template_parses() {
        p(TEMPLATE).unwrap();
    }

    #[test]
    fn unknown_key_has_line_and_col() {
        let err = p("[project]\ntarget = \"main\"\ncolour = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("hybrid.toml:3:1: unknown key `colour`"), "{msg}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let err = p("[project]\nconcurrency = \"many\"\n").unwrap_err().to_string();
        assert!(err.starts_with("hybrid.toml:2:"), "{err}");
    }

    #[test]
    fn unknown_section_is_named_as_such() {
        let err = p("[project]\n\n[colour]\nx = 1\n").unwrap_err().to_string();
        assert!(err.starts_with("hybrid.toml:3:2: unknown section `[colour]`"), "{err}");
    }

    #[test]
    fn value_errors_point_at_the_right_key() {
        let text = "# the command to verify is below\n[agent]\ncommand = [\"x\"]\n\n[verify]\n  command = []\n";
        let err = p(text).unwrap_err().to_string();
        assert!(err.starts_with("hybrid.toml:6:3: `[verify] command` must not be empty"), "{err}");
        let err = p("[project]\ntarget = \"a\"\nconcurrency = 0\n").unwrap_err().to_string();
        assert!(err.starts_with("hybrid.toml:3:1:"), "{err}");
    }

    #[test]
    fn messages_are_one_line() {
        let err = p("[project\ntarget = 1\n").unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        let err = p("[project]\nconcurrency = \"many\"\n").unwrap_err().to_string();
        assert!(err.contains("whole number"), "{err}");
    }

    #[test]
    fn tasks_have_spans() {
        let c = p("[[task]]\nid = \"a\"\n\n[[task]]\nid = \"b\"\ndepends_on = [\"a\"]\n").unwrap();
        assert_eq!(c.config.tasks.len(), 2);
        let (line, _) = crate::error::line_col(&c.text, c.config.tasks[1].get_ref().id.span().start);
        assert_eq!(line, 5);
    }
}
