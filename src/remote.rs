//! Landing through a shared remote: fetch the target, publish a train with one leased, atomic push.
//!
//! Contract: a target has a remote when `[project] remote` names one (`remote = ""` means none),
//! else when the target branch's upstream is `<remote>/<target>` (`branch.<target>.remote` and
//! `branch.<target>.merge`); otherwise landings are local as before. `merge --local` ignores it.
//!
//! - [`Remote::fetch`] brings the remote's `refs/heads/<target>` into
//!   `refs/remotes/<remote>/<target>` and the published ledger (`refs/hybrid/ledger/*`, landed
//!   tips `refs/hybrid/tips/*`) in, never overwriting a ledger or tip ref that exists here:
//!   published records are immutable, so a local one that differs is kept (and reported by
//!   `git hybrid fetch`). An unreachable remote, or one without the target, is an error.
//! - [`Remote::publish`] pushes a train in ONE `git push --atomic --porcelain`: the target to the
//!   last squash, leased with `--force-with-lease=refs/heads/<target>:<the tip it built on>`, and
//!   each task's ledger record and landed tip, leased on "absent". Either every ref moves on the
//!   remote or none does. A lost lease is [`Published::Raced`] (the caller fetches, recomputes
//!   and retries after [`backoff`]); any other rejection (a pre-receive hook, branch protection,
//!   permissions, the network) is an error carrying the server's own message. Never a force push.
//! - The ledger refs: `refs/hybrid/ledger/<id>/<attempt>` points at a blob holding the landing
//!   record as JSON ([`record_blob`]: the ledger record without this machine's paths).
//!
//! Every git child goes through [`crate::git`] (scrubbed environment, no hooks).

use anyhow::{Context, Result};
use git2::Oid;

use crate::error::HybridError;
use crate::repo::Project;
use crate::{git, names};

pub mod claims;
pub mod file_claims;
pub mod published;

pub use published::{ledger_ref, record_blob, LEDGER_REFS};

/// A target that lands through a remote.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The remote's name (`origin`).
    pub name: String,
    /// The target branch (same name on the remote).
    pub target: String,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Every ref moved on the remote.
    Done,
    /// A lease was lost (someone else moved the target or published the same record): nothing
    /// moved; fetch, recompute, retry.
    Raced(String),
}

/// The remote `target` lands through, if any (see the module contract). `local` (`--local`)
/// means none. A configured remote that does not exist is bad input (exit 2).
pub fn for_target(project: &Project, target: &str, local: bool) -> Result<Option<Remote>> {
    if local {
        return Ok(None);
    }
    let name = match &project.config.config.project.remote {
        Some(n) if n.is_empty() => return Ok(None),
        Some(n) => n.clone(),
        None => match upstream_remote(&project.repo, target) {
            Some(n) => n,
            None => return Ok(None),
        },
    };
    if project.repo.find_remote(&name).is_err() {
        return Err(HybridError::Repo(format!(
            "[project] remote names {name:?}, which is not a remote of this repository (see `git remote -v`)"
        ))
        .into());
    }
    Ok(Some(Remote { name, target: target.to_string() }))
}

/// The commit `sync` merges into a task: with a remote, the remote's target (fetched now) when
/// it contains the local target `local`, else `local`; without one, `local`.
pub fn sync_tip(project: &Project, target: &str, local: Oid) -> Result<Oid> {
    let Some(remote) = for_target(project, target, false)? else { return Ok(local) };
    let (tip, _) = remote.fetch(project)?;
    Ok(if crate::git::graph::contains(&project.repo, tip, local)? { tip } else { local })
}

/// `branch.<target>.remote` when the branch's upstream is the same-named branch of a remote.
fn upstream_remote(repo: &git2::Repository, target: &str) -> Option<String> {
    let cfg = repo.config().ok()?;
    let remote = cfg.get_string(&format!("branch.{target}.remote")).ok()?;
    let merge = cfg.get_string(&format!("branch.{target}.merge")).ok()?;
    (remote != "." && !remote.is_empty() && merge == format!("refs/heads/{target}")).then_some(remote)
}

impl Remote {
    /// `refs/remotes/<remote>/<target>`: the remote's target as last fetched.
    pub fn tracking_ref(&self) -> String {
        format!("refs/remotes/{}/{}", self.name, self.target)
    }

    /// The remote's target tip as last fetched, if it was.
    pub fn tracked_tip(&self, project: &Project) -> Option<Oid> {
        project.repo.refname_to_id(&self.tracking_ref()).ok()
    }

    /// Fetches the target and the published ledger (see the module contract); returns the
    /// remote's target tip. Ledger and tip refs that differ here are kept and listed in the
    /// second value (`refname`).
    pub fn fetch(&self, project: &Project) -> Result<(Oid, Vec<String>)> {
        let _serial = self.lock(project)?;
        let target_spec = format!("+refs/heads/{}:{}", self.target, self.tracking_ref());
        let out = self.git_fetch(
            project,
            &["--porcelain", "--no-recurse-submodules"],
            &[target_spec, format!("{}*:{0}*", names::LEDGER_REFS), format!("{}*:{0}*", names::TIP_REFS)],
        )?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut kept = Vec::new();
        let mut target_ok = out.status.success();
        for line in stdout.lines() {
            // `<flag> <old> <new> <local ref>`; `!` is a rejected update.
            let mut f = line.split_whitespace();
            let (Some(flag), Some(_), Some(_), Some(local)) = (f.next(), f.next(), f.next(), f.next()) else {
                continue;
            };
            if local == self.tracking_ref() {
                target_ok = flag != "!";
            } else if flag == "!" {
                kept.push(local.to_string());
            }
        }
        if !target_ok {
            return Err(anyhow::anyhow!(
                "cannot fetch {} from {}: {}; nothing was changed",
                self.target,
                self.name,
                stderr.trim()
            ));
        }
        let tip = project.repo.refname_to_id(&self.tracking_ref()).with_context(|| {
            format!(
                "{} has no branch {} (push it first: git push -u {} {})",
                self.name, self.target, self.name, self.target
            )
        })?;
        Ok((tip, kept))
    }

    /// Serializes this repository's fetches and pushes of the remote: git updates the
    /// remote-tracking ref under its own lock and fails (rather than waits) when two
    /// processes update it at once.
    fn lock(&self, project: &Project) -> Result<crate::lock::FileLock> {
        crate::lock::FileLock::acquire(&names::remote_lock(&project.state_dir(), &self.name))
    }

    /// The commit a landing builds on: the remote's target tip (`fetched`, else fetched now),
    /// which must contain the local target `local`; a local target with commits the remote
    /// does not have is refused (exit 3): landing would leave them behind.
    pub fn start_on(&self, project: &Project, local: Oid, fetched: Option<Oid>) -> Result<Oid> {
        let tip = match fetched {
            Some(t) => t,
            None => self.fetch(project)?.0,
        };
        if !crate::git::graph::contains(&project.repo, tip, local)? {
            return Err(HybridError::LocalChanges {
                message: format!(
                    "{t} has commits that are not on {r}/{t}; nothing was changed. Push them first \
                     (`git push {r} {t}`), or land on this clone only with `git hybrid merge --local`",
                    t = self.target,
                    r = self.name
                ),
                paths: Vec::new(),
            }
            .into());
        }
        Ok(tip)
    }

    /// `git fetch <options> <remote> <refspecs>`, built for the network (`git::network`: the user's
    /// ssh/proxy environment, no program the repository's config names), no tags, no FETCH_HEAD.
    fn git_fetch(&self, project: &Project, options: &[&str], refspecs: &[String]) -> Result<std::process::Output> {
        let mut args = vec!["fetch".to_string(), "--no-tags".into(), "--no-write-fetch-head".into()];
        args.push(git::network::upload_pack(&self.name));
        args.extend(options.iter().map(|o| o.to_string()));
        args.push(self.name.clone());
        args.extend(refspecs.iter().cloned());
        git::network::output(&project.root, &args)
    }

    /// `git push --no-verify <options> <remote> <refspecs>`, built for the network (see
    /// [`Remote::git_fetch`]).
    fn git_push(&self, project: &Project, options: &[String], refspecs: &[String]) -> Result<std::process::Output> {
        let mut args = vec!["push".to_string(), "--no-verify".into()];
        args.push(git::network::receive_pack(&self.name));
        args.extend(options.iter().cloned());
        args.push(self.name.clone());
        args.extend(refspecs.iter().cloned());
        git::network::output(&project.root, &args)
    }

    /// Pushes `new` to the remote's target, leased on `expect`, together with `records` (ref,
    /// object) leased on absent, all or nothing (see the module contract).
    pub fn publish(&self, project: &Project, expect: Oid, new: Oid, records: &[(String, Oid)]) -> Result<Published> {
        let target_ref = format!("refs/heads/{}", self.target);
        let mut options = vec![
            "--porcelain".to_string(),
            "--atomic".into(),
            "--no-recurse-submodules".into(),
            format!("--force-with-lease={target_ref}:{expect}"),
        ];
        for (r, _) in records {
            options.push(format!("--force-with-lease={r}:"));
        }
        let mut specs = vec![format!("{new}:{target_ref}")];
        for (r, oid) in records {
            specs.push(format!("{oid}:{r}"));
        }
        let out = {
            let _serial = self.lock(project)?; // the push moves the remote-tracking ref too
            self.git_push(project, &options, &specs)?
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let statuses = parse_push_porcelain(&stdout);
        if out.status.success() && statuses.iter().all(|s| s.ok) && !statuses.is_empty() {
            return Ok(Published::Done);
        }
        if let Some(lost) = statuses.iter().find(|s| s.lease_lost()) {
            return Ok(Published::Raced(format!("{} ({})", lost.remote_ref, lost.summary)));
        }
        // The lease held when checked, but another push moved a ref before the server's own
        // compare-and-swap (its ref transaction): also a race.
        if server_side_race(&statuses, &stderr) {
            return Ok(Published::Raced(format!("{} moved during the push", self.target)));
        }
        let why: Vec<String> = statuses
            .iter()
            .filter(|s| !s.ok && !s.summary.contains("atomic push failed"))
            .map(|s| format!("{}: {}", s.remote_ref, s.summary))
            .collect();
        let server: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        Err(anyhow::anyhow!(
            "{} refused the landing on {}{}{}; nothing landed and {} was not moved here",
            self.name,
            self.target,
            if why.is_empty() { String::new() } else { format!(" ({})", why.join("; ")) },
            if server.is_empty() { String::new() } else { format!(":\n{}", server.join("\n")) },
            self.target,
        ))
    }
}

/// One ref's line of `git push --porcelain`: `<flag>\t<from>:<to>\t<summary>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStatus {
    pub remote_ref: String,
    /// Anything but `!` (rejected).
    pub ok: bool,
    pub summary: String,
}

impl PushStatus {
    /// A rejection because the remote ref was not what the lease expected (or moved on).
    pub fn lease_lost(&self) -> bool {
        !self.ok
            && ["stale info", "fetch first", "non-fast-forward", "already exists", "needs force"]
                .iter()
                .any(|r| self.summary.contains(r))
    }
}

/// True when the server refused a push because another push moved one of its refs between the
/// lease check and the server's own ref transaction (its compare-and-swap, or its ref lock).
pub fn server_side_race(statuses: &[PushStatus], stderr: &str) -> bool {
    statuses.iter().any(|s| !s.ok && s.summary.contains("remote rejected"))
        && stderr.lines().any(|l| {
            (l.contains("cannot lock ref")
                && (l.contains("but expected") || l.contains("already exists") || l.contains("File exists")))
                || (l.contains("Unable to create") && l.contains(".lock"))
        })
}

/// Parses the per-ref lines of `git push --porcelain` (other lines are ignored).
pub fn parse_push_porcelain(stdout: &str) -> Vec<PushStatus> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            let flag = parts.next()?;
            let refs = parts.next()?;
            let summary = parts.next().unwrap_or("").to_string();
            if flag.len() != 1 {
                return None;
            }
            let remote_ref = refs.rsplit_once(':').map_or(refs, |(_, to)| to).to_string();
            Some(PushStatus { remote_ref, ok: flag != "!", summary })
        })
        .collect()
}

/// Sleeps before retry `n` (1-based) after a lost lease: exponential from 20 ms, capped at
/// 160 ms, with full jitter, so landers racing on one remote spread out instead of colliding
/// again. Kept short: a lost lease means another push just finished, and the fetch and recompute
/// before the next push already take longer than the push that won (`benches/remote.py`: a 1 s
/// cap made 4 clones land 2.5 times slower than the CLI way's immediate retries).
pub fn backoff(n: usize) {
    jitter_sleep((10u64 << n.min(4)).min(160));
}

/// Sleeps between two looks at the remote while waiting for a claim: up to a second, jittered.
pub fn poll_sleep() {
    jitter_sleep(1000);
}

/// Sleeps a random time in `0..=cap_ms` milliseconds.
fn jitter_sleep(cap_ms: u64) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(nanos) ^ (u64::from(std::process::id()) << 16);
    // One round of splitmix64 over time and pid: enough to decorrelate processes.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    std::thread::sleep(std::time::Duration::from_millis(z % (cap_ms + 1)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_push_porcelain() {
        let out = "To ../srv.git\n!\tc652:refs/heads/main\t[rejected] (atomic push failed)\n\
                   !\t13ad:refs/hybrid/ledger/x/1\t[rejected] (stale info)\n*\tab:refs/hybrid/tips/x\t[new reference]\nDone\n";
        let s = parse_push_porcelain(out);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].remote_ref, "refs/heads/main");
        assert!(!s[0].ok && !s[0].lease_lost());
        assert!(s[1].lease_lost());
        assert!(s[2].ok);
        let hook = parse_push_porcelain("!\tab:refs/heads/main\t[remote rejected] (pre-receive hook declined)\n");
        assert!(!hook[0].ok && !hook[0].lease_lost());
    }
}
