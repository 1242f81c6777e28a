//! The `Hybrid-*` trailers of a squash landing: the one parser.
//!
//! Contract: [`parse_trailers`] reads the trailer block (git's rules, through libgit2) of a
//! commit message and returns the `Hybrid-Task`, `Hybrid-Attempt`, `Hybrid-Base` and
//! `Hybrid-Tip` values, or `None` without `Hybrid-Task`. Every reader (verify, the post-merge
//! hook, the landing-note recovery, the ledger's trust rules and its rebuild) uses this one.
//! The writer is `land/message.rs`.

use git2::Oid;
use serde::Serialize;

/// The trailers a squash landing carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LandingTrailers {
    pub task: String,
    /// `Hybrid-Attempt`; absent means attempt 1.
    pub attempt: Option<u32>,
    pub base: Option<String>,
    pub tip: Option<String>,
    /// `Hybrid-Attempt` was present but not a positive number.
    pub bad_attempt: bool,
}

/// Parses the `Hybrid-*` trailers of a commit message (`None` without `Hybrid-Task`).
pub fn parse_trailers(message: &str) -> Option<LandingTrailers> {
    let trailers = git2::message_trailers_strs(message).ok()?;
    let mut out = LandingTrailers { task: String::new(), attempt: None, base: None, tip: None, bad_attempt: false };
    let mut has_task = false;
    for (k, v) in trailers.iter() {
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "hybrid-task" => {
                has_task = true;
                out.task = v.to_string();
            }
            "hybrid-attempt" => match v.parse::<u32>() {
                Ok(n) if n >= 1 => out.attempt = Some(n),
                _ => out.bad_attempt = true,
            },
            "hybrid-base" => out.base = Some(v.to_string()),
            "hybrid-tip" => out.tip = Some(v.to_string()),
            _ => {}
        }
    }
    has_task.then_some(out)
}

impl LandingTrailers {
    /// The attempt (absent means 1); `None` when `Hybrid-Attempt` is not a positive number.
    pub fn attempt_number(&self) -> Option<u32> {
        if self.bad_attempt {
            None
        } else {
            Some(self.attempt.unwrap_or(1))
        }
    }

    /// `Hybrid-Tip` as a commit id, if present and well-formed.
    pub fn tip_oid(&self) -> Option<Oid> {
        self.tip.as_deref().and_then(|t| Oid::from_str(t).ok())
    }

    /// `Hybrid-Base` as a commit id, if present and well-formed.
    pub fn base_oid(&self) -> Option<Oid> {
        self.base.as_deref().and_then(|t| Oid::from_str(t).ok())
    }
}

/// The trailers of a commit (`None` without `Hybrid-Task`).
pub fn of_commit(commit: &git2::Commit) -> Option<LandingTrailers> {
    let msg = String::from_utf8_lossy(commit.message_bytes());
    if !msg.contains("Hybrid-Task") && !msg.to_ascii_lowercase().contains("hybrid-task") {
        return None;
    }
    parse_trailers(&msg)
}
