//! Task ids: the one name that becomes a branch, a worktree folder and a ledger file.
//!
//! Contract: [`validate`] accepts exactly `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` that does not end
//! in `.lock`, does not contain `..`, and whose branch `hybrid/<id>` git accepts as a ref name
//! (git's own rules, through libgit2's `git_reference_is_valid_name`: no trailing `.`, among
//! others). It runs before git is touched, so a bad id (`../x`, `-rf`, control characters,
//! `a.`) can never reach a path, a lock file or a ref name.

use crate::error::HybridError;

/// The longest task id accepted.
pub const MAX_LEN: usize = 64;

/// Checks an attempt number: attempts count from 1.
pub fn validate_attempt(attempt: u32) -> Result<(), HybridError> {
    if attempt == 0 {
        return Err(HybridError::Usage("--attempt starts at 1".into()));
    }
    Ok(())
}

/// Splits a command-line task argument `id` or `id@N` (attempt N; ids never hold `@`) into
/// the id and its attempt, `default` when none is given. A bad `N` is bad input.
pub fn split_attempt(arg: &str, default: u32) -> Result<(String, u32), HybridError> {
    let Some((id, n)) = arg.rsplit_once('@') else { return Ok((arg.to_string(), default)) };
    let attempt: u32 = n.parse().map_err(|_| {
        HybridError::Usage(format!("{arg:?}: the attempt after '@' must be a whole number (e.g. {id}@2)"))
    })?;
    validate_attempt(attempt)?;
    Ok((id.to_string(), attempt))
}

/// Checks a task id against the naming rule.
pub fn validate(id: &str) -> Result<(), HybridError> {
    let bad = |reason: &str| Err(HybridError::InvalidTaskId { id: id.to_string(), reason: reason.to_string() });
    let Some(first) = id.chars().next() else {
        return bad("it is empty");
    };
    if !first.is_ascii_alphanumeric() {
        return bad("it must start with a letter or digit");
    }
    if id.len() > MAX_LEN {
        return bad("it is longer than 64 characters");
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        let reason = if c.is_control() {
            format!("it contains the control character U+{:04X}", c as u32)
        } else {
            format!("it contains {c:?}")
        };
        return bad(&reason);
    }
    if id.contains("..") {
        return bad("it contains \"..\"");
    }
    if id.ends_with(".lock") {
        return bad("it ends in \".lock\"");
    }
    // The regex above is a subset of what git accepts for most ids; git's own refname rules
    // decide the rest (e.g. no component may end in `.`), for every branch an attempt can use.
    for branch in [crate::names::branch(id, 1), crate::names::branch(id, 2)] {
        if !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
            let why = if id.ends_with('.') { ": a name must not end in \".\"" } else { "" };
            return bad(&format!("git refuses {branch:?} as a branch name (git check-ref-format{why})"));
        }
    }
    Ok(())
}

/// The task attempt a branch belongs to ([`crate::names::branch`] read back): `hybrid/<id>` is
/// attempt 1, `hybrid/<id>@<N>` attempt N > 1; `None` for any other branch or a bad id.
pub fn from_branch(branch: &str) -> Option<(String, u32)> {
    let rest = branch.strip_prefix("refs/heads/").unwrap_or(branch).strip_prefix(crate::names::BRANCH_PREFIX)?;
    let (id, attempt) = match rest.rsplit_once('@') {
        Some((id, n)) => (id, n.parse::<u32>().ok().filter(|n| *n > 1)?),
        None => (rest, 1),
    };
    validate(id).ok()?;
    Some((id.to_string(), attempt))
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn splits_attempts() {
        use super::split_attempt;
        assert_eq!(split_attempt("t1", 3).unwrap(), ("t1".to_string(), 3));
        assert_eq!(split_attempt("t1@2", 1).unwrap(), ("t1".to_string(), 2));
        assert!(split_attempt("t1@0", 1).is_err());
        assert!(split_attempt("t1@x", 1).is_err());
    }

    #[test]
    fn accepts_good_ids() {
        for id in ["a", "T1", "fix-login", "plugin.auth_2", "9", &"x".repeat(64)] {
            assert!(validate(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_bad_ids() {
        for id in [
            "",
            "../x",
            "-rf",
            "a/b",
            "a..b",
            "x.lock",
            "a\nb",
            "a\u{7}",
            " a",
            "_a",
            ".a",
            "é",
            &"x".repeat(65),
            "a b",
            "a.",
            "fix.",
        ] {
            assert!(validate(id).is_err(), "{id:?}");
        }
    }
}
