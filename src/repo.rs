//! Finding the repository and everything git-hybrid derives from it.
//!
//! Contract: [`Project::open`] works from the main checkout, any linked worktree and any
//! subdirectory, and always resolves to the same main repository, common git directory,
//! configuration and ledger. It refuses bare, shallow and empty repositories with a clear
//! [`HybridError::Repo`] (exit 2) before anything is changed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{Oid, Repository};

use crate::config::{self, LoadedConfig};
use crate::error::HybridError;

/// An opened repository with its configuration.
pub struct Project {
    /// The main repository (not a linked worktree), opened at its common git directory.
    pub repo: Repository,
    /// The common git directory shared by all worktrees (`.git` of the main checkout).
    pub common_dir: PathBuf,
    /// The main checkout's root (where `hybrid.toml` lives).
    pub root: PathBuf,
    /// The checkout the command was run from (main or linked), if any.
    pub cwd_workdir: Option<PathBuf>,
    /// The configuration (defaults when `hybrid.toml` is absent).
    pub config: LoadedConfig,
    /// Whether git syncs ref updates to disk here (`core.fsync`); the ledger follows it.
    pub fsync_refs: bool,
}

impl Project {
    /// Discovers the repository from `cwd` and loads its configuration.
    pub fn open(cwd: &Path) -> Result<Project> {
        let found = Repository::discover(cwd).map_err(|e| {
            HybridError::Repo(format!("not inside a git repository ({}): {}", cwd.display(), e.message()))
        })?;
        if found.is_bare() {
            return Err(HybridError::Repo(
                "this is a bare repository; git-hybrid needs a repository with a working tree".into(),
            )
            .into());
        }
        let cwd_workdir = found.workdir().map(|p| p.to_path_buf());
        let common_dir = canonical(found.commondir());
        let repo = if found.is_worktree() { Repository::open(&common_dir)? } else { found };
        if repo.is_bare() {
            return Err(HybridError::Repo("the main repository is bare; git-hybrid needs a working tree".into()).into());
        }
        if repo.is_shallow() {
            return Err(HybridError::Repo(
                "this is a shallow clone; landings need full history (run `git fetch --unshallow`)".into(),
            )
            .into());
        }
        let root = canonical(repo.workdir().context("repository has no working tree")?);
        require_main_checkout(&root, &common_dir)?;
        let config = config::load(&root)?;
        let core_fsync = repo.config().ok().and_then(|c| c.get_string("core.fsync").ok());
        let fsync_refs = crate::fsutil::git_fsyncs_refs(core_fsync.as_deref());
        Ok(Project { repo, common_dir, root, cwd_workdir, config, fsync_refs })
    }

    /// A second handle on the same repository (own libgit2 object database, same config), for
    /// work that attaches an in-memory object backend it must not leave behind.
    pub fn reopen(&self) -> Result<Project> {
        let repo =
            Repository::open(&self.common_dir).with_context(|| format!("cannot open {}", self.common_dir.display()))?;
        Ok(Project {
            repo,
            common_dir: self.common_dir.clone(),
            root: self.root.clone(),
            cwd_workdir: self.cwd_workdir.clone(),
            config: self.config.clone(),
            fsync_refs: self.fsync_refs,
        })
    }

    /// Where git-hybrid keeps its own state: `<common git dir>/hybrid`.
    pub fn state_dir(&self) -> PathBuf {
        crate::names::state_dir(&self.common_dir)
    }

    /// The target branch name: `[project] target`, else the repository's default branch.
    pub fn target_branch(&self) -> Result<String> {
        if let Some(t) = &self.config.config.project.target {
            return Ok(t.clone());
        }
        default_branch(&self.repo)
    }

    /// The target branch's full ref name, checked to exist.
    pub fn target_ref(&self) -> Result<String> {
        let name = self.target_branch()?;
        let full = format!("refs/heads/{name}");
        if self.repo.find_reference(&full).is_err() {
            return Err(HybridError::Repo(format!(
                "the target branch {name:?} does not exist (set [project] target in hybrid.toml or create it)"
            ))
            .into());
        }
        Ok(full)
    }

    /// The target branch's tip commit.
    pub fn target_tip(&self) -> Result<Oid> {
        let r = self.target_ref()?;
        let oid = self.repo.refname_to_id(&r).with_context(|| format!("cannot read {r}"))?;
        Ok(oid)
    }

    /// Resolves a revision to a commit id; a missing revision is bad input (exit 2).
    pub fn resolve_commit(&self, rev: &str) -> Result<Oid> {
        let obj = self.repo.revparse_single(rev).map_err(|_| HybridError::Repo(format!("unknown revision {rev:?}")))?;
        let commit =
            obj.peel_to_commit().map_err(|_| HybridError::Repo(format!("revision {rev:?} is not a commit")))?;
        Ok(commit.id())
    }

    /// Root folder for task worktrees: `[project] worktree_root` or sibling `<repo>.hybrid`.
    ///
    /// The configured path is normalized (`..` resolved, symlinked ancestors followed), so a
    /// value like `../repo/wt` is seen for what it is: a folder inside the checkout.
    pub fn worktree_root(&self) -> PathBuf {
        match &self.config.config.project.worktree_root {
            Some(p) if p.is_absolute() => normalize(p),
            Some(p) => normalize(&self.root.join(p)),
            None => crate::names::default_worktree_root(&self.root),
        }
    }

    /// Plugin root for `shape = "plugin"` claims.
    pub fn plugin_root(&self) -> String {
        self.config.config.project.plugin_root.clone().unwrap_or_else(|| "src/plugins".to_string())
    }

    /// Fails with a clear error when the repository has no commits yet.
    pub fn require_commits(&self) -> Result<()> {
        // A HEAD that resolves proves a commit without listing every ref (slow with many branches).
        if self.repo.head().is_ok_and(|h| h.target().is_some()) {
            return Ok(());
        }
        let empty = self.repo.is_empty().unwrap_or(false) || self.repo.references()?.flatten().next().is_none();
        if empty {
            return Err(HybridError::Repo("the repository has no commits yet; make a first commit".into()).into());
        }
        Ok(())
    }
}

/// Refuses a main checkout that is really a linked worktree: `core.worktree` in the shared
/// config (which any worktree can write) pointed at a task's worktree would make that
/// worktree's `hybrid.toml` the configuration. The trusted configuration is the main
/// checkout's: its `.git` is the common git directory, or a `gitdir:` file naming it.
fn require_main_checkout(root: &Path, common_dir: &Path) -> Result<()> {
    let dot_git = root.join(".git");
    let Ok(text) = std::fs::read_to_string(&dot_git) else { return Ok(()) }; // a folder, or absent
    let named = text.strip_prefix("gitdir:").map(|g| g.trim()).unwrap_or("");
    let named = if Path::new(named).is_absolute() { PathBuf::from(named) } else { root.join(named) };
    if canonical(&named) == common_dir {
        return Ok(());
    }
    Err(HybridError::Repo(format!(
        "the main checkout resolves to {}, which is a linked worktree (is `core.worktree` set in {}?); \
         git-hybrid reads hybrid.toml only from the main checkout",
        root.display(),
        common_dir.join("config").display()
    ))
    .into())
}

/// The repository's default branch: `origin/HEAD`'s branch, else `main`, else `master`,
/// else `init.defaultBranch`, else the branch the main checkout has out.
pub fn default_branch(repo: &Repository) -> Result<String> {
    if let Ok(r) = repo.find_reference("refs/remotes/origin/HEAD") {
        if let Some(t) = r.symbolic_target() {
            if let Some(name) = t.strip_prefix("refs/remotes/origin/") {
                if repo.find_reference(&format!("refs/heads/{name}")).is_ok() {
                    return Ok(name.to_string());
                }
            }
        }
    }
    for name in ["main", "master"] {
        if repo.find_reference(&format!("refs/heads/{name}")).is_ok() {
            return Ok(name.to_string());
        }
    }
    if let Ok(cfg) = repo.config() {
        if let Ok(name) = cfg.get_string("init.defaultBranch") {
            if repo.find_reference(&format!("refs/heads/{name}")).is_ok() {
                return Ok(name);
            }
        }
    }
    if repo.is_empty().unwrap_or(false) {
        return Err(HybridError::Repo("the repository has no commits yet; make a first commit".into()).into());
    }
    let head = repo.find_reference("HEAD").context("cannot read HEAD")?;
    match head.symbolic_target() {
        Some(t) if repo.find_reference(t).is_ok() => Ok(t.trim_start_matches("refs/heads/").to_string()),
        _ => Err(HybridError::Repo(
            "cannot tell the target branch: HEAD is detached and there is no main/master; set [project] target in hybrid.toml".into(),
        )
        .into()),
    }
}

/// Canonicalises a path when possible (keeps it as given otherwise).
pub fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Resolves `.` and `..` lexically, then canonicalizes the deepest ancestor that exists (so
/// symlinks are followed) and appends the rest: works for paths not created yet.
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut clean = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !clean.pop() {
                    clean.push(c);
                }
            }
            other => clean.push(other),
        }
    }
    let mut existing = clean.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return clean,
        }
    }
    let mut out = canonical(existing);
    for name in rest.iter().rev() {
        out.push(name);
    }
    out
}

/// Short form of a SHA for tables.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(10)]
}
