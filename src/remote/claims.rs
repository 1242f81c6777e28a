//! Task claims across machines: several dispatchers on clones of one remote run one plan
//! without running a task twice.
//!
//! Contract: a dispatcher claims a task before it starts an agent for it by creating
//! `refs/hybrid/claims/<id>` on the remote with a push leased on "absent", so exactly one
//! machine can create it. The ref points at a blob holding [`Claim`] as JSON (machine, pid,
//! expiry in Unix seconds). While the agent runs the claim is renewed (a push leased on the blob
//! it replaces) every third of its lifetime ([`ClaimGuard`]); it is released (deleted, leased on
//! the last blob) when the attempt ends, landed or not. A task whose published landing record
//! is on the remote is not run again, whether that is seen while waiting for the claim or
//! right after winning it (a machine publishes its landing before it releases its claim). A claim whose expiry has passed (its
//! dispatcher died or lost the network) is taken over by a push leased on that stale blob, so
//! two machines taking over the same stale claim cannot both win. Every push goes through
//! [`super::Remote`]'s git boundary; a lost lease is never forced.

use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use git2::Oid;
use serde::{Deserialize, Serialize};

use super::file_claims::{self, Scope, Verdict};
use super::{Published, Remote};
use crate::names;
use crate::repo::Project;

/// How long a claim lasts without renewal.
pub const CLAIM_TTL: Duration = Duration::from_secs(600);

/// What a claim says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub task: String,
    /// The claiming machine's host name.
    pub machine: String,
    pub pid: u32,
    /// Unix seconds after which anyone may take the claim over.
    pub expires: u64,
    /// What else the task claims (its files, core single-flight: `super::file_claims`).
    #[serde(default)]
    pub scope: Scope,
    /// `false` while the dispatcher checks the other claims, `true` once its agent may run.
    #[serde(default)]
    pub running: bool,
}

impl Claim {
    fn new(task: &str, ttl: Duration, scope: &Scope, running: bool) -> Claim {
        Claim {
            task: task.to_string(),
            machine: hostname(),
            pid: std::process::id(),
            expires: unix_now() + ttl.as_secs(),
            scope: scope.clone(),
            running,
        }
    }

    /// Whether this process holds it.
    pub fn is_this_process(&self) -> bool {
        self.machine == hostname() && self.pid == std::process::id()
    }

    /// Whether the claim has expired.
    pub fn expired(&self) -> bool {
        self.expires <= unix_now()
    }
}

/// What [`Remote::claim`] found.
#[derive(Debug)]
pub enum Claimed {
    /// This process holds the claim (the blob the remote ref points at).
    Mine(Oid),
    /// Another live claim holds the task.
    Held(Claim),
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_bytes();
    if name.is_empty() {
        "unknown".into()
    } else {
        String::from_utf8_lossy(name).into_owned()
    }
}

impl Remote {
    /// Claims task `id` on the remote (see the module contract): creates the claim, or takes
    /// over an expired one; a live claim of someone else is returned as [`Claimed::Held`].
    pub fn claim(&self, project: &Project, id: &str, ttl: Duration, scope: &Scope) -> Result<Claimed> {
        let name = names::claim_ref(id);
        let mut lease: Option<Oid> = None;
        for _ in 0..5 {
            let blob = write_claim(project, &Claim::new(id, ttl, scope, false))?;
            match self.push_ref(project, &name, Some(blob), lease)? {
                Published::Done => return Ok(Claimed::Mine(blob)),
                Published::Raced(_) => {}
            }
            match self.read_claim(project, id)? {
                None => lease = None, // released meanwhile: create it again
                Some((oid, claim)) if claim.expired() => lease = Some(oid),
                Some((_, claim)) => return Ok(Claimed::Held(claim)),
            }
        }
        anyhow::bail!("the claim of {id} on {} kept changing; try again", self.name)
    }

    /// Replaces the claim `mine` with a fresh expiry, `running` (see `super::file_claims`);
    /// `None` when it is not ours any more.
    pub fn renew_claim(
        &self,
        project: &Project,
        id: &str,
        mine: Oid,
        ttl: Duration,
        scope: &Scope,
    ) -> Result<Option<Oid>> {
        let blob = write_claim(project, &Claim::new(id, ttl, scope, true))?;
        Ok(match self.push_ref(project, &names::claim_ref(id), Some(blob), Some(mine))? {
            Published::Done => Some(blob),
            Published::Raced(_) => None,
        })
    }

    /// Replaces the `checking` claim `mine` with a fresh expiry, still `checking`; `None` when it
    /// is not ours any more.
    pub fn claim_refresh(&self, project: &Project, id: &str, mine: Oid, scope: &Scope) -> Result<Option<Oid>> {
        let blob = write_claim(project, &Claim::new(id, CLAIM_TTL, scope, false))?;
        Ok(match self.push_ref(project, &names::claim_ref(id), Some(blob), Some(mine))? {
            Published::Done => Some(blob),
            Published::Raced(_) => None,
        })
    }

    /// Deletes the claim if it is still `mine`.
    pub fn release_claim(&self, project: &Project, id: &str, mine: Oid) -> Result<()> {
        self.push_ref(project, &names::claim_ref(id), None, Some(mine)).map(|_| ())
    }

    /// The claim of `id` on the remote now, if any (its blob and content).
    pub fn read_claim(&self, project: &Project, id: &str) -> Result<Option<(Oid, Claim)>> {
        let local = names::seen_claim_ref(id);
        let out = self.git_fetch(project, &[], &[format!("+{}:{local}", names::claim_ref(id))])?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("couldn't find remote ref") {
                return Ok(None);
            }
            anyhow::bail!("cannot read the claim of {id} on {}: {}", self.name, err.trim());
        }
        let oid = project.repo.refname_to_id(&local)?;
        let blob = project.repo.find_blob(oid)?;
        // A claim that does not parse is nobody's: treat it as expired so it can be taken over.
        let claim = serde_json::from_slice(blob.content()).unwrap_or(Claim {
            task: id.to_string(),
            machine: "?".into(),
            pid: 0,
            expires: 0,
            scope: Scope::default(),
            running: false,
        });
        Ok(Some((oid, claim)))
    }

    /// One leased push of one ref: to `new` (`None` deletes it), expecting `expect` (`None`:
    /// absent). A lost lease is [`Published::Raced`].
    fn push_ref(&self, project: &Project, name: &str, new: Option<Oid>, expect: Option<Oid>) -> Result<Published> {
        let lease = format!("--force-with-lease={name}:{}", expect.map(|o| o.to_string()).unwrap_or_default());
        let spec = match new {
            Some(o) => format!("{o}:{name}"),
            None => format!(":{name}"),
        };
        let out = self.git_push(project, &["--porcelain".into(), lease], &[spec])?;
        let statuses = super::parse_push_porcelain(&String::from_utf8_lossy(&out.stdout));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() && !statuses.is_empty() && statuses.iter().all(|s| s.ok) {
            return Ok(Published::Done);
        }
        if let Some(lost) = statuses.iter().find(|s| s.lease_lost()) {
            return Ok(Published::Raced(lost.summary.clone()));
        }
        if super::server_side_race(&statuses, &stderr) {
            return Ok(Published::Raced(format!("{name} moved during the push")));
        }
        anyhow::bail!("{} refused {name}: {}", self.name, stderr.trim())
    }
}

fn write_claim(project: &Project, claim: &Claim) -> Result<Oid> {
    let json = serde_json::to_vec(claim)?;
    project.repo.blob(&json).context("cannot write a claim")
}

/// A claim held while an attempt runs: renewed in the background every third of its lifetime,
/// released when dropped.
pub struct ClaimGuard {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClaimGuard {
    /// Keeps the claim `mine` of task `id` alive (the repository is reopened at `root` by the
    /// renewing thread).
    pub fn hold(
        root: std::path::PathBuf,
        remote: Remote,
        (id, scope): (String, Scope),
        mine: Oid,
        ttl: Duration,
    ) -> ClaimGuard {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let Ok(project) = Project::open(&root) else { return };
            let mut current = mine;
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(ttl / 3) {
                match remote.renew_claim(&project, &id, current, ttl, &scope) {
                    Ok(Some(next)) => current = next,
                    Ok(None) => {
                        eprintln!("git-hybrid: warning: the claim of {id} was taken over by another machine");
                        return;
                    }
                    Err(e) => eprintln!("git-hybrid: warning: cannot renew the claim of {id}: {e:#}"),
                }
            }
            if let Err(e) = remote.release_claim(&project, &id, current) {
                eprintln!("git-hybrid: warning: cannot release the claim of {id}: {e:#}");
            }
        });
        ClaimGuard { stop: Some(tx), thread: Some(thread) }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What [`claim_or_wait`] ended with.
pub enum ClaimWait {
    /// This dispatcher may run the task (`None`: another attempt of it in this process holds
    /// the claim already).
    Claimed(Option<ClaimGuard>),
    /// Another machine landed the task meanwhile: its published record is in the ledger now.
    LandedElsewhere(Box<crate::ledger::TaskRecord>),
    /// `stop()` said to give up.
    Stopped,
}

/// Claims task `id` for this dispatcher, or waits while another machine's live claim holds it:
/// until that machine lands it (its published record is brought in: [`ClaimWait::LandedElsewhere`]),
/// releases the claim or lets it expire (then it is claimed here). Also waits while another
/// machine runs a task whose `scope` overlaps this one's (`super::file_claims`). `on_wait` is
/// told once who holds it. Polls the remote about once a second, jittered.
pub fn claim_or_wait(
    project: &Project,
    remote: &Remote,
    id: &str,
    scope: &Scope,
    stop: &dyn Fn() -> bool,
    on_wait: &dyn Fn(&Claim),
) -> Result<ClaimWait> {
    let mut told = false;
    let mut tell = |c: &Claim| {
        if !told {
            on_wait(c);
            told = true;
        }
    };
    loop {
        match remote.claim(project, id, CLAIM_TTL, scope)? {
            Claimed::Mine(blob) => match file_claims::check(project, remote, id, scope)? {
                Verdict::Clear => {
                    let Some(running) = remote.renew_claim(project, id, blob, CLAIM_TTL, scope)? else {
                        continue; // taken over meanwhile (expired under a very slow check): start over
                    };
                    let guard = ClaimGuard::hold(
                        project.root.clone(),
                        remote.clone(),
                        (id.to_string(), scope.clone()),
                        running,
                        CLAIM_TTL,
                    );
                    // A machine lands, then releases its claim: a claim won just now may be of a
                    // task that landed a moment ago (its record is published by then).
                    if let Some(rec) = landed_elsewhere(project, remote, id)? {
                        return Ok(ClaimWait::LandedElsewhere(Box::new(rec)));
                    }
                    return Ok(ClaimWait::Claimed(Some(guard)));
                }
                Verdict::Wait(c) => {
                    // Keep the claim: the other side yields or turns `running` (then we yield).
                    tell(&c);
                    let mut current = blob;
                    let mut refreshed = std::time::Instant::now();
                    loop {
                        if stop() {
                            remote.release_claim(project, id, current)?;
                            return Ok(ClaimWait::Stopped);
                        }
                        super::poll_sleep();
                        match file_claims::check(project, remote, id, scope)? {
                            Verdict::Wait(_) if refreshed.elapsed() >= CLAIM_TTL / 3 => {
                                // Keep it alive while waiting, as a running claim is renewed.
                                match remote.claim_refresh(project, id, current, scope)? {
                                    Some(next) => (current, refreshed) = (next, std::time::Instant::now()),
                                    None => break,
                                }
                            }
                            Verdict::Wait(_) => {}
                            Verdict::Clear | Verdict::Yield(_) => break,
                        }
                    }
                    remote.release_claim(project, id, current)?;
                    continue; // decide afresh, from a new claim
                }
                Verdict::Yield(c) => {
                    tell(&c);
                    remote.release_claim(project, id, blob)?;
                    while file_claims::blocked(project, remote, id, scope)?.is_some() {
                        if stop() {
                            return Ok(ClaimWait::Stopped);
                        }
                        super::poll_sleep();
                    }
                    continue;
                }
            },
            Claimed::Held(c) if c.is_this_process() => {
                return Ok(ClaimWait::Claimed(None));
            }
            Claimed::Held(c) => tell(&c),
        }
        if let Some(rec) = landed_elsewhere(project, remote, id)? {
            return Ok(ClaimWait::LandedElsewhere(Box::new(rec)));
        }
        if stop() {
            return Ok(ClaimWait::Stopped);
        }
        super::poll_sleep();
    }
}

/// Fetches the remote's ledger and brings in a confirmed landing of any attempt of `id`.
fn landed_elsewhere(project: &Project, remote: &Remote, id: &str) -> Result<Option<crate::ledger::TaskRecord>> {
    let (tip, _) = remote.fetch(project)?;
    let ledger = project.ledger();
    for public in super::published::published_records(&project.repo)?.into_iter().filter(|r| r.id == id) {
        let _lock = ledger.lock_task(id)?;
        let local = ledger.get(id, public.attempt)?;
        if let Some(done) = local.as_ref().filter(|l| l.state.is_done()) {
            return Ok(Some(done.clone()));
        }
        if let super::published::Adopted::Yes(rec) =
            super::published::adopt(project, id, public.attempt, local.as_ref(), tip)?
        {
            return Ok(Some(*rec));
        }
    }
    Ok(None)
}
