//! Typed errors for the cases callers branch on, and the process exit codes they map to.
//!
//! Contract: every failure a user can cause is reported as a [`HybridError`] (possibly wrapped
//! in `anyhow` context), and [`exit_code`] turns any error chain into the documented exit code:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | the operation failed (agent or verify failure, verify found bad commits, not built yet, internal error) |
//! | 2 | bad input: usage, config, task id, missing ref, unsupported repository state; nothing changed |
//! | 3 | refused to protect work or a conflict: dirty worktree, merge conflict, local changes in the way, the landing gate |
//! | 4 | busy: another live process holds the lock (e.g. a second dispatcher) |

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for an operation that ran and failed.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for bad input; nothing was changed.
pub const EXIT_USAGE: i32 = 2;
/// Exit code for a conflict or a refusal that protects uncommitted or unlanded work.
pub const EXIT_CONFLICT: i32 = 3;
/// Exit code when another process holds the resource.
pub const EXIT_BUSY: i32 = 4;

/// Errors that carry a specific exit code or that callers inspect.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HybridError {
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// `hybrid.toml` (or a plan file) is malformed; `location` is `file:line:col`.
    #[error("{location}: {message}")]
    Config { location: String, message: String },
    /// A task id that breaks the naming rule.
    #[error("invalid task id {id:?}: {reason} (task ids match [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}, must not end in \".lock\" or \".\", must not contain \"..\" and must make a branch name git accepts)")]
    InvalidTaskId { id: String, reason: String },
    /// The repository cannot be used for this command (bare, shallow, empty, detached, missing ref).
    #[error("{0}")]
    Repo(String),
    /// git-hybrid state (a ledger record, ...) that is unreadable or that git does not confirm.
    /// Anything under the git directory can be written by an agent, so such a file is never
    /// acted on: nothing was skipped, removed or changed on its word.
    #[error("corrupt git-hybrid state {path}: {reason}; nothing was changed on its word (inspect it, then delete or fix it)")]
    Corrupt { path: String, reason: String },
    /// A task that the ledger does not know.
    #[error("unknown task {0:?} (see `git hybrid status`)")]
    UnknownTask(String),
    /// A merge (sync, catch-up or landing) conflicts; nothing was changed.
    #[error("{what} conflicts in {} path(s): {}", paths.len(), paths.join(", "))]
    Conflict { what: String, paths: Vec<String> },
    /// Uncommitted or local changes block the command; nothing was changed.
    #[error("{message}{}", list_paths(paths))]
    LocalChanges { message: String, paths: Vec<String> },
    /// The landing gate refused a task (paths outside its claims, protected paths, secrets,
    /// paths git refuses); nothing of it landed. `paths` lists what was found.
    #[error("{message}")]
    Refused { message: String, paths: Vec<String> },
    /// Another live process holds a lock.
    #[error("{0}")]
    Busy(String),
    /// A command that a later release fills in.
    #[error("`git hybrid {0}` is not built yet")]
    NotBuilt(&'static str),
}

impl HybridError {
    /// The exit code this error maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            HybridError::Usage(_)
            | HybridError::Config { .. }
            | HybridError::InvalidTaskId { .. }
            | HybridError::Repo(_)
            | HybridError::Corrupt { .. }
            | HybridError::UnknownTask(_) => EXIT_USAGE,
            HybridError::Conflict { .. } | HybridError::LocalChanges { .. } | HybridError::Refused { .. } => {
                EXIT_CONFLICT
            }
            HybridError::Busy(_) => EXIT_BUSY,
            HybridError::NotBuilt(_) => EXIT_FAILURE,
        }
    }
}

/// `": a, b"`, or nothing when there are no paths (a message never ends in a dangling colon).
fn list_paths(paths: &[String]) -> String {
    if paths.is_empty() {
        String::new()
    } else {
        format!(": {}", paths.join(", "))
    }
}

/// Builds a [`HybridError::Config`] from a file and a byte offset into its text.
pub fn config_error(path: &std::path::Path, text: &str, offset: usize, message: impl Into<String>) -> HybridError {
    let (line, col) = line_col(text, offset);
    HybridError::Config { location: format!("{}:{}:{}", path.display(), line, col), message: message.into() }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The exit code for any error chain: the first [`HybridError`] found decides, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(h) = cause.downcast_ref::<HybridError>() {
            return h.exit_code();
        }
    }
    EXIT_FAILURE
}

/// Finds the typed error in a chain, if any.
pub fn find_hybrid_error(err: &anyhow::Error) -> Option<&HybridError> {
    err.chain().find_map(|c| c.downcast_ref::<HybridError>())
}

/// The class name of an exit code (MCP tool errors): `bad_input` (2), `conflict` (3, also
/// refusals that protect work), `busy` (4), `failed` (1 and anything else).
pub fn class_of(code: i32) -> &'static str {
    match code {
        EXIT_USAGE => "bad_input",
        EXIT_CONFLICT => "conflict",
        EXIT_BUSY => "busy",
        _ => "failed",
    }
}

/// What an error says to a program: the one mapping from an error chain to the `--json` error
/// shape (`main`, `merge` of several tasks, `sync`) and to MCP tool errors.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    /// The message with its context chain (`{err:#}`).
    pub error: String,
    pub exit_code: i32,
    /// The conflicting paths of a [`HybridError::Conflict`].
    pub conflicts: Option<Vec<String>>,
    /// The paths of a [`HybridError::LocalChanges`] or [`HybridError::Refused`].
    pub paths: Option<Vec<String>>,
}

impl ErrorReport {
    /// The report of any error chain (its exit code from [`exit_code`]).
    pub fn of(err: &anyhow::Error) -> ErrorReport {
        let mut r = ErrorReport::new(format!("{err:#}"), exit_code(err));
        match find_hybrid_error(err) {
            Some(HybridError::Conflict { paths, .. }) => r.conflicts = Some(paths.clone()),
            Some(HybridError::LocalChanges { paths, .. } | HybridError::Refused { paths, .. }) => {
                r.paths = Some(paths.clone())
            }
            _ => {}
        }
        r
    }

    /// A report of a message and an exit code, without paths.
    pub fn new(error: impl Into<String>, exit_code: i32) -> ErrorReport {
        ErrorReport { error: error.into(), exit_code, conflicts: None, paths: None }
    }

    /// `{"error", "exit_code"}`, plus `conflicts` or `paths` when the error carries them.
    pub fn to_json(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({ "error": self.error, "exit_code": self.exit_code });
        if let Some(c) = &self.conflicts {
            doc["conflicts"] = serde_json::json!(c);
        }
        if let Some(p) = &self.paths {
            doc["paths"] = serde_json::json!(p);
        }
        doc
    }
}

/// A path rendered for messages.
pub fn show(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc\n", 0), (1, 1));
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
        assert_eq!(line_col("a\nbc\n", 5), (3, 1));
    }
}
