//! The landing gate: what every squash must pass before the target moves.
//!
//! Contract: [`Gate::pass`] runs in memory on each squash of a train (in `land::build_train`,
//! after its tree is known and before its commit is written or any ref moves), so `merge`,
//! `dispatch` and every other way of landing pass it; hooks and agents cannot skip it. It
//! compares the squash's tree with its parent's (the task's own change) and refuses the task
//! ([`HybridError::Refused`], exit 3) when:
//!
//! 1. **Claims**: a changed path (added, modified or removed) lies outside the task's claims
//!    ([`crate::claims::for_record`]: the claims recorded when the attempt started). A task with
//!    no claims is unrestricted. `merge --allow-unclaimed` lets the paths through.
//! 2. **Protected paths**: a changed path is protected and the task's claims do not name it
//!    explicitly. Protected: `hybrid.toml`, `.github/workflows/**`, `.gitlab-ci.yml`,
//!    `.gitattributes` (in any folder), `.gitmodules`, the hook folders `.husky/**`,
//!    `.githooks/**` and the folder `core.hooksPath` names inside the repository, the hook
//!    managers' configs `.pre-commit-config.yaml` and `lefthook.yml`, every repository file the
//!    verify commands name (`[verify] command`, the `[[task]]` `verify` overrides, and the verify
//!    command a dispatch runs), and the globs of `[land] protected`. A claim names a protected
//!    path explicitly when it is written without wildcards and is that path or a folder holding
//!    it (`hybrid.toml`, `.github/workflows`), or is written exactly as the protected glob
//!    (`.github/workflows/**`); `**`, `.github/**` or `*.toml` do not. This applies to tasks
//!    without claims too (a manual `merge`); `merge --allow-protected` lets the paths through.
//! 3. **Secrets**: an added line (a line of a new or changed file whose text the parent's version
//!    does not have), a new file's name, or the squash commit message matches
//!    [`crate::secrets`]. Reported as `file:line (kind)`, never with the secret. A line with the
//!    allow comment (`hybrid: allow-secret`) and matches listed in `[hooks] allow_secrets` pass.
//! 4. **Paths**: a new path (or one whose mode changed) that git would refuse to check out
//!    ([`crate::safe_path`]: `.git` in any case or NTFS/HFS+ form, `..`, `.`, a symlinked
//!    `.gitmodules`, ...), whatever is checked out. No override.
//!
//! A refused task drops out of its train like a conflict (the rest still lands); its ledger
//! record becomes `failed` with the reason in `failure`. An override that let paths through is
//! appended to the record's `overrides` (kind, paths, time) before the landing moves anything.
//! Cost: a tree diff that skips unchanged subtrees, one glob match per changed path and one
//! regex pass over the added lines (`benches/gate.rs`; under 5 ms for a 1,000-line diff).

use anyhow::{Context, Result};
use git2::Tree;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::claims;
use crate::error::HybridError;
use crate::ledger::{GateOverride, TaskRecord, TaskState};
use crate::repo::Project;
use crate::secrets::{self, Allowlist, ALLOW_MARKER};
use crate::treediff::{self, Change};

/// The built-in protected globs (see the module contract).
pub const PROTECTED: &[&str] = &[
    "hybrid.toml",
    ".github/workflows/**",
    ".gitlab-ci.yml",
    "**/.gitattributes",
    ".gitmodules",
    ".husky/**",
    ".githooks/**",
    ".pre-commit-config.yaml",
    "lefthook.yml",
];

/// Explicit permissions a landing was given (`merge --allow-unclaimed`, `--allow-protected`)
/// and the verify commands of the plan a dispatch runs.
#[derive(Debug, Clone, Default)]
pub struct GateOptions {
    pub allow_unclaimed: bool,
    pub allow_protected: bool,
    /// Verify argvs whose named files are protected, besides those of `hybrid.toml`.
    pub verify: Vec<Vec<String>>,
}

/// The gate compiled once for a landing.
pub struct Gate<'p> {
    project: &'p Project,
    opts: GateOptions,
    /// Protected patterns as written, and their compiled set (same order).
    protected: Vec<String>,
    set: GlobSet,
    /// Repository files the verify commands name.
    verify_files: Vec<String>,
    allow: Allowlist,
}

/// What the gate found in one squash.
#[derive(Debug, Default)]
pub struct Findings {
    pub outside_claims: Vec<String>,
    pub protected: Vec<String>,
    pub secrets: Vec<String>,
    pub bad_paths: Vec<String>,
    /// Overrides that let paths through.
    pub overrides: Vec<GateOverride>,
    claims: Option<String>,
}

impl Findings {
    /// The refusal, if anything was found (`what`: the task, for the message).
    pub fn refusal(&self, what: &str) -> Option<HybridError> {
        let mut reasons = Vec::new();
        let mut paths = Vec::new();
        let mut add = |why: String, list: &[String]| {
            if !list.is_empty() {
                reasons.push(format!("{why}: {}", list.join(", ")));
                paths.extend(list.iter().cloned());
            }
        };
        add(format!("path(s) outside its claims ({})", self.claims.as_deref().unwrap_or("")), &self.outside_claims);
        add("protected path(s) its claims do not name explicitly".into(), &self.protected);
        add("secret-looking text (file:line, kind)".into(), &self.secrets);
        add("path(s) git refuses to check out".into(), &self.bad_paths);
        if reasons.is_empty() {
            return None;
        }
        Some(HybridError::Refused {
            message: format!("the landing gate refused {what}; nothing of it landed: {}", reasons.join("; ")),
            paths,
        })
    }
}

impl<'p> Gate<'p> {
    /// Compiles the protected globs and reads the verify commands and secret allowlist of the
    /// main checkout's `hybrid.toml` (never a task's copy).
    pub fn new(project: &'p Project, opts: &GateOptions) -> Result<Gate<'p>> {
        let cfg = &project.config.config;
        let mut protected: Vec<String> = PROTECTED.iter().map(|s| s.to_string()).collect();
        if let Some(dir) = hooks_path_in_repo(project) {
            protected.push(format!("{dir}/**"));
        }
        protected
            .extend(cfg.land.protected.iter().map(|g| g.trim_start_matches("./").trim_end_matches('/').to_string()));
        let mut b = GlobSetBuilder::new();
        for p in &protected {
            b.add(glob(p)?);
        }
        let set = b.build().context("cannot compile the protected globs")?;
        let mut commands: Vec<Vec<String>> = Vec::new();
        commands.extend(cfg.verify.command.iter().map(|c| c.argv()));
        commands.extend(cfg.tasks.iter().filter_map(|t| t.get_ref().verify.as_ref().map(|c| c.argv())));
        commands.extend(opts.verify.iter().cloned());
        let mut verify_files = Vec::new();
        for argv in &commands {
            for f in named_files(project, argv) {
                if !verify_files.contains(&f) {
                    verify_files.push(f);
                }
            }
        }
        Ok(Gate {
            project,
            opts: opts.clone(),
            protected,
            set,
            verify_files,
            allow: Allowlist::new(&cfg.hooks.allow_secrets),
        })
    }

    /// The repository files the verify commands name (protected).
    pub fn verify_files(&self) -> &[String] {
        &self.verify_files
    }

    /// Checks one squash (`base` its parent's tree, `new` its tree, `message` its message) of
    /// task attempt `rec`; records the refusal or the overrides used in the ledger (the caller
    /// holds the task lock) and returns the refusal, if any.
    pub fn pass(
        &self,
        rec: &TaskRecord,
        base: &Tree<'_>,
        new: &Tree<'_>,
        message: &str,
    ) -> Result<Option<HybridError>> {
        let f = self.check(rec, base, new, message)?;
        let what = format!("{} (attempt {})", rec.id, rec.attempt);
        let ledger = self.project.ledger();
        if let Some(refusal) = f.refusal(&what) {
            let why = refusal.to_string();
            ledger.upsert_locked(rec, |r| {
                r.state = TaskState::Failed;
                r.failure = Some(why);
            })?;
            return Ok(Some(refusal));
        }
        if !f.overrides.is_empty() {
            ledger.upsert_locked(rec, |r| {
                for o in f.overrides {
                    if !r.overrides.iter().any(|x| x.kind == o.kind && x.paths == o.paths) {
                        r.overrides.push(o);
                    }
                }
            })?;
        }
        Ok(None)
    }

    /// The findings for one squash, without recording anything.
    pub fn check(&self, rec: &TaskRecord, base: &Tree<'_>, new: &Tree<'_>, message: &str) -> Result<Findings> {
        let repo = &self.project.repo;
        let changes = treediff::changes(repo, Some(base), Some(new))?;
        let mut f = Findings::default();
        let claims = claims::for_record(self.project, rec)?;
        f.claims = claims.as_ref().map(|c| c.describe());
        let patterns: Vec<String> = claims.as_ref().map(|c| c.patterns.clone()).unwrap_or_default();
        let now = crate::fsutil::now_rfc3339();
        let mut unclaimed_allowed = Vec::new();
        let mut protected_allowed = Vec::new();
        for c in &changes {
            let path = c.display();
            if let Some(claims) = &claims {
                if !claims.allows(&path) {
                    if self.opts.allow_unclaimed {
                        unclaimed_allowed.push(path.clone());
                    } else {
                        f.outside_claims.push(path.clone());
                    }
                }
            }
            if let Some(by) = self.protected_by(&path) {
                if !names_explicitly(&patterns, &path, &by) {
                    if self.opts.allow_protected {
                        protected_allowed.push(path.clone());
                    } else {
                        f.protected.push(path.clone());
                    }
                }
            }
            if let Some(n) = c.new {
                if c.old.is_none_or(|o| o.mode != n.mode) {
                    if let Err(why) = crate::safe_path::check(&c.path, n.is_symlink()) {
                        f.bad_paths.push(format!("{path} ({why})"));
                    }
                }
            }
        }
        for (kind, paths) in [("allow-unclaimed", unclaimed_allowed), ("allow-protected", protected_allowed)] {
            if !paths.is_empty() {
                f.overrides.push(GateOverride { kind: kind.into(), paths, at: now.clone() });
            }
        }
        self.scan_secrets(&changes, message, &mut f.secrets)?;
        Ok(f)
    }

    /// The protected patterns matching `path` (empty: not protected); `None` when none does.
    fn protected_by<'a>(&'a self, path: &'a str) -> Option<Vec<&'a str>> {
        let mut by: Vec<&str> = self.set.matches(path).into_iter().map(|i| self.protected[i].as_str()).collect();
        if self.verify_files.iter().any(|v| v == path) {
            by.push(path);
        }
        (!by.is_empty()).then_some(by)
    }

    /// Secret-looking added lines, new file names and message lines, as `file:line (kind)`.
    fn scan_secrets(&self, changes: &[Change], message: &str, out: &mut Vec<String>) -> Result<()> {
        let repo = &self.project.repo;
        for c in changes {
            let Some(n) = c.new else { continue };
            let path = c.display();
            if c.old.is_none() {
                for hit in secrets::scan(&path) {
                    if !self.allow.allows(&path[hit.start..hit.end]) {
                        out.push(format!("{path} (file name, {})", hit.kind));
                    }
                }
            }
            if !n.is_file() {
                continue;
            }
            let new_blob = repo.find_blob(n.id)?;
            if new_blob.is_binary() {
                continue;
            }
            let old_blob = match c.old {
                Some(o) if o.is_file() => Some(repo.find_blob(o.id)?),
                _ => None,
            };
            let old_lines: std::collections::HashSet<&[u8]> =
                old_blob.as_ref().map(|b| b.content().split(|x| *x == b'\n').collect()).unwrap_or_default();
            let added = new_blob
                .content()
                .split(|x| *x == b'\n')
                .enumerate()
                .filter(|(_, l)| !old_lines.contains(l))
                .map(|(i, l)| (i + 1, l));
            self.scan_lines(&path, added, out);
        }
        let lines = message.as_bytes().split(|x| *x == b'\n').enumerate().map(|(i, l)| (i + 1, l));
        self.scan_lines("commit message", lines, out);
        Ok(())
    }

    /// Scans numbered lines as one text (one regex pass), skipping lines with the allow comment.
    fn scan_lines<'a>(&self, what: &str, lines: impl Iterator<Item = (usize, &'a [u8])>, out: &mut Vec<String>) {
        let mut text = String::new();
        let mut starts: Vec<(usize, usize)> = Vec::new(); // (offset in text, line number)
        for (no, l) in lines {
            let l = String::from_utf8_lossy(l);
            if l.contains(ALLOW_MARKER) {
                continue;
            }
            starts.push((text.len(), no));
            text.push_str(&l);
            text.push('\n');
        }
        if text.is_empty() {
            return;
        }
        for hit in secrets::scan(&text) {
            if self.allow.allows(&text[hit.start..hit.end]) {
                continue;
            }
            let at = starts.partition_point(|(off, _)| *off <= hit.start);
            let line = starts.get(at.wrapping_sub(1)).map(|(_, n)| *n).unwrap_or(0);
            out.push(format!("{what}:{line} ({})", hit.kind));
        }
    }
}

/// The gate's verdict on a task branch as it stands (its change since its merge base with the
/// target), without recording anything: what `dispatch` checks before it runs the verify
/// command, so a task that changed a verify script never has that script run.
pub fn precheck(project: &Project, rec: &TaskRecord, opts: &GateOptions) -> Result<Option<HybridError>> {
    let repo = &project.repo;
    let tip = repo
        .refname_to_id(&format!("refs/heads/{}", rec.branch))
        .with_context(|| format!("cannot read {}", rec.branch))?;
    let target = repo
        .refname_to_id(&format!("refs/heads/{}", rec.target))
        .with_context(|| format!("cannot read {}", rec.target))?;
    let base = crate::git::generation::merge_base(repo, tip, target)?
        .context("the task branch and the target have no common history")?;
    let (base, new) = (repo.find_commit(base)?.tree()?, repo.find_commit(tip)?.tree()?);
    let f = Gate::new(project, opts)?.check(rec, &base, &new, "")?;
    Ok(f.refusal(&format!("{} (attempt {})", rec.id, rec.attempt)))
}

/// Whether a claim names protected `path` explicitly (see the module contract): a claim without
/// wildcards that is the path or a folder holding it, or a claim written as a protected glob
/// that matches the path.
fn names_explicitly(claims: &[String], path: &str, protected_by: &[&str]) -> bool {
    claims.iter().any(|c| {
        let c = c.trim_start_matches("./").trim_end_matches('/');
        if c.is_empty() {
            return false;
        }
        let literal = !crate::plan::has_glob_meta(c);
        (literal && (path == c || path.strip_prefix(c).is_some_and(|rest| rest.starts_with('/'))))
            || protected_by.contains(&c)
    })
}

fn glob(p: &str) -> Result<Glob> {
    GlobBuilder::new(p).literal_separator(true).build().with_context(|| format!("bad protected glob {p:?}"))
}

/// `core.hooksPath` as a folder inside the repository (relative to its root), when it is one.
fn hooks_path_in_repo(project: &Project) -> Option<String> {
    let cfg = project.repo.config().ok()?;
    let p = cfg.get_path("core.hooksPath").ok().filter(|p| !p.as_os_str().is_empty())?;
    repo_relative(project, &p.to_string_lossy())
}

/// A path as the repository names it (`/`-separated, relative to the root), when `p` lies
/// inside the main checkout (relative paths are taken from the root, as commands run there).
fn repo_relative(project: &Project, p: &str) -> Option<String> {
    let path = std::path::Path::new(p);
    let rel = if path.is_absolute() {
        let root = &project.root;
        let norm = crate::repo::normalize(path);
        norm.strip_prefix(root).ok()?.to_path_buf()
    } else {
        path.to_path_buf()
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty() && parts[0] != ".git").then(|| parts.join("/"))
}

/// The repository paths a command names: each word of its argv (shell strings split on
/// whitespace and shell operators; `--opt=value` gives `value`) that is a relative path or an
/// absolute one inside the main checkout. `make` also names its makefiles. Words that name no
/// file are harmless: only a change to exactly that path counts.
pub fn named_files(project: &Project, argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for arg in argv {
        for word in arg.split(|c: char| c.is_whitespace() || ";&|()<>'\"`".contains(c)) {
            let word = word.rsplit('=').next().unwrap_or(word);
            if word.is_empty() || word.starts_with(['-', '$', '~']) {
                continue;
            }
            if word == "make" || word.ends_with("/make") {
                out.extend(["Makefile", "makefile", "GNUmakefile"].map(String::from));
            }
            if let Some(rel) = repo_relative(project, word) {
                if !out.contains(&rel) {
                    out.push(rel);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_claims() {
        let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(names_explicitly(&c(&["hybrid.toml"]), "hybrid.toml", &["hybrid.toml"]));
        assert!(!names_explicitly(&c(&["**"]), "hybrid.toml", &["hybrid.toml"]));
        assert!(!names_explicitly(&c(&["*.toml"]), "hybrid.toml", &["hybrid.toml"]));
        let wf = ".github/workflows/ci.yml";
        assert!(names_explicitly(&c(&[".github/workflows"]), wf, &[".github/workflows/**"]));
        assert!(names_explicitly(&c(&[".github/workflows/**"]), wf, &[".github/workflows/**"]));
        assert!(names_explicitly(&c(&["./.github/workflows/ci.yml"]), wf, &[".github/workflows/**"]));
        assert!(!names_explicitly(&c(&[".github/**"]), wf, &[".github/workflows/**"]));
        assert!(!names_explicitly(&c(&[".git"]), ".github/x", &[".github/x"]));
    }
}
