//! The Landlock sandbox agents (and the verify command) run in, on Linux.
//!
//! Contract: [`restrict`] confines the calling process and everything it starts afterwards so
//! that *writes* succeed only beneath the given paths (reads and execution are not
//! restricted). It is applied by the supervising child ([`super::supervise`]) before it starts
//! the agent, never in the dispatcher itself. [`write_paths`] computes what an agent may write:
//! its worktree, its own worktree admin dir in the shared git dir, the object store, the task
//! branches' refs and reflogs (`refs/heads/hybrid/`, `logs/refs/heads/hybrid/`) and checkpoint
//! refs (`refs/hybrid/checkpoints/`, written by the pre-commit hook), its run folder, the system
//! temp dir, a few device files, and `[agent] allow_write`. Everything else, notably
//! `.git/config`, `.git/hooks/`, `.git/info/`, the main checkout, other tasks' worktrees and
//! git-hybrid's state, fails with EACCES.
//!
//! [`probe`] tells whether the running kernel enforces Landlock (the ABI version), so the
//! dispatcher can warn once and run without it where it does not.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// `[agent] sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Landlock where the kernel supports it (the default).
    #[default]
    Landlock,
    /// No sandbox.
    Off,
}

impl Mode {
    /// Parses the config value.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "landlock" => Some(Mode::Landlock),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }
}

/// Device files and folders every process may write to.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/ptmx", "/dev/pts", "/dev/shm"];

/// The Landlock ABI version the kernel supports, `None` when it does not (or not Linux).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn probe() -> Option<i32> {
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) returns the ABI version.
    // Through `libc`: neither the landlock crate nor rustix exposes this probe.
    // SAFETY: with a null attribute and this flag the call reads and writes no memory.
    let v = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
    (v > 0).then_some(v as i32)
}

#[cfg(not(target_os = "linux"))]
pub fn probe() -> Option<i32> {
    None
}

/// Confines this process (and its future children): writes only beneath `writes`.
#[cfg(target_os = "linux")]
pub fn restrict(writes: &[PathBuf]) -> Result<()> {
    use landlock::{path_beneath_rules, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI};
    // V3: every write right (create, remove, rename across folders, truncate). Later ABIs add
    // ioctl and network rights this sandbox does not restrict.
    let access = AccessFs::from_write(ABI::V3);
    let status = Ruleset::default()
        .handle_access(access)?
        .create()?
        .add_rules(path_beneath_rules(writes, access))?
        .restrict_self()?;
    if status.ruleset == RulesetStatus::NotEnforced {
        anyhow::bail!("the kernel does not enforce Landlock");
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn restrict(_writes: &[PathBuf]) -> Result<()> {
    anyhow::bail!("the Landlock sandbox is Linux-only")
}

/// Where a run may write (see the module contract). Folders the agent's own git will create
/// (`refs/heads/hybrid/`, its reflog folder, `refs/hybrid/checkpoints/`) are created first,
/// because a rule can only name an existing path.
pub fn write_paths(common_dir: &Path, worktree: &Path, run_dir: &Path, allow_write: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = vec![worktree.to_path_buf(), run_dir.to_path_buf(), common_dir.join("objects")];
    if let Ok(repo) = git2::Repository::open(worktree) {
        let admin = repo.path().to_path_buf();
        // The worktree's own admin dir, never the common dir itself (a main-checkout "task").
        if admin.starts_with(common_dir.join("worktrees")) {
            out.push(admin);
        }
    }
    // The task branches (`refs/heads/hybrid/`), their reflogs, the pre-commit checkpoints.
    let branches = crate::names::branch_ref(crate::names::BRANCH_PREFIX);
    for rel in [branches.clone(), format!("logs/{branches}"), crate::names::CHECKPOINT_REFS.to_string()] {
        let p = common_dir.join(rel.trim_end_matches('/'));
        let _ = std::fs::create_dir_all(&p);
        out.push(p);
    }
    out.push(std::env::temp_dir());
    out.extend(DEVICES.iter().map(PathBuf::from));
    out.extend(allow_write.iter().cloned());
    out
}

/// `[agent] allow_write` entries as paths: `~/x` under `HOME`, relative ones under `root`.
pub fn resolve_allow_write(entries: &[String], root: &Path) -> Vec<PathBuf> {
    entries
        .iter()
        .map(|e| {
            if let Some(rest) = e.strip_prefix("~/") {
                if let Some(home) = std::env::var_os("HOME") {
                    return PathBuf::from(home).join(rest);
                }
            }
            root.join(e)
        })
        .collect()
}
