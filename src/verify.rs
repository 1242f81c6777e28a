//! `git hybrid verify`: checks that the squash landings on the target are what they claim.
//!
//! Contract: for every commit in the range that carries a `Hybrid-Task` trailer, [`verify`] checks
//! - it has exactly one parent, and that parent is its `Hybrid-Base`;
//! - its tree equals the in-memory merge of `Hybrid-Base` and `Hybrid-Tip` when the tip object is
//!   present (landings keep it at `refs/hybrid/tips/*`; CI fetches those). A missing tip is a
//!   warning ("tree not checked"), not a failure;
//! - the ledger agrees when it has a record of that task attempt (`merge_sha` is this commit,
//!   `merge_base` and `tip` match the trailers), and no task attempt lands twice in the range.
//!
//! Any commit in the range with more than one parent is a failure unless merge commits are
//! allowed (`--allow-merges`, `[verify] allow_merge_commits`). The default range is the target's
//! commits that its upstream lacks; without an upstream the caller must give a range or `--all`:
//! the target's commits since git-hybrid's first landing on it (history from before git-hybrid,
//! with its merges, is not judged; see [`first_landing`]), or since `--since REV`; the report
//! says which (`scope`). Ledger records of landings on the target that
//! were deleted are rebuilt first ([`crate::ledger::rebuild`]). Otherwise reads only, except that a merge of base and tip that
//! is not a fast-forward writes its tree object (unreferenced; `git gc` drops it).

use std::collections::HashMap;

use anyhow::{Context, Result};
use git2::{BranchType, Oid, Repository, Sort};
use serde::Serialize;

use crate::error::HybridError;
use crate::repo::{short, Project};

pub use crate::trailers::{parse_trailers, LandingTrailers};

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// `A..B` or a single revision (everything reachable from it).
    pub range: Option<String>,
    /// The target's commits since git-hybrid's first landing on it (see [`verify`]).
    pub all: bool,
    /// With `all`: the target's commits that this revision lacks, instead.
    pub since: Option<String>,
    /// Allow merge commits in the range.
    pub allow_merges: bool,
}

/// The verdict on one checked commit.
#[derive(Debug, Clone, Serialize)]
pub struct CommitCheck {
    pub commit: String,
    pub summary: String,
    /// `Hybrid-Task`, when present.
    pub task: Option<String>,
    pub attempt: Option<u32>,
    pub parents: usize,
    /// `"ok"` or `"failed"`.
    pub status: String,
    pub failures: Vec<String>,
    pub warnings: Vec<String>,
}

/// The whole verdict.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The range walked, as `A..B`, or `--all <target>`.
    pub range: String,
    /// Where an `--all` walk started: the commit it stopped at (excluded), else `null`.
    pub since: Option<String>,
    /// What the walk covered, in words (for `--all`: since when, and why).
    pub scope: String,
    pub target: String,
    /// Commits walked in the range.
    pub scanned: usize,
    /// Commits checked (landings and merge commits), oldest first.
    pub commits: Vec<CommitCheck>,
    pub failures: usize,
    pub warnings: usize,
    pub ok: bool,
    /// Ledger records rebuilt from the target's squash commits because they were missing, and
    /// what could not be recovered ([`crate::ledger::rebuild`]).
    #[serde(skip_serializing_if = "crate::ledger::rebuild::RebuildReport::is_empty")]
    pub rebuilt: crate::ledger::rebuild::RebuildReport,
}

/// Walks the range and checks every landing and merge commit in it (see the module contract).
pub fn verify(project: &Project, opts: &VerifyOptions) -> Result<VerifyReport> {
    let repo = &project.repo;
    project.require_commits()?;
    // With an explicit range the target only names the report (CI checkouts are often detached).
    let target = match (&opts.range, project.target_branch()) {
        (Some(_), Err(_)) => "HEAD".to_string(),
        (_, t) => t?,
    };
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
    let all = opts.all || opts.since.is_some();
    let mut since = None;
    let scope;
    let range = match (&opts.range, all) {
        (Some(_), true) => return Err(HybridError::Usage("give a range, or --all/--since, not both".into()).into()),
        (Some(r), false) => {
            push_range(project, &mut walk, r)?;
            scope = format!("the commits in {r}");
            r.clone()
        }
        (None, true) => {
            let tip = project.target_tip()?;
            walk.push(tip)?;
            let start = match &opts.since {
                Some(rev) => {
                    let c = project.resolve_commit(rev)?;
                    Some((vec![c], format!("since {rev} ({})", short(&c.to_string()))))
                }
                None => first_landing(project, &target, tip)?,
            };
            match start {
                Some((stops, why)) => {
                    for c in &stops {
                        walk.hide(*c)?;
                    }
                    since = stops.first().map(|c| c.to_string());
                    scope = format!("the commits of {target} {why}");
                }
                None => {
                    walk.hide(tip)?;
                    scope = format!(
                        "nothing: git-hybrid never landed on {target} (to check other commits, name them: `verify {target}` checks its whole history)"
                    );
                }
            }
            format!("--all {target}")
        }
        (None, false) => {
            let tip = project.target_tip()?;
            let branch = repo.find_branch(&target, BranchType::Local)?;
            let upstream = branch.upstream().map_err(|_| {
                HybridError::Usage(format!(
                    "the target branch {target:?} has no upstream, so there is no default range; give one (e.g. origin/{target}..{target}) or use --all"
                ))
            })?;
            let up_name = upstream.name().ok().flatten().unwrap_or("upstream").to_string();
            let up = upstream.get().target().context("the upstream branch has no target")?;
            walk.push(tip)?;
            walk.hide(up)?;
            scope = format!("the commits of {target} that {up_name} lacks");
            format!("{up_name}..{target}")
        }
    };
    let allow_merges = opts.allow_merges || project.config.config.verify.allow_merge_commits;
    let rebuilt = crate::ledger::rebuild::rebuild(project)?;
    let ledger = project.ledger().unconfirmed(); // compares every record with its commit itself
    let mut seen: HashMap<(String, u32), Oid> = HashMap::new();
    let mut commits = Vec::new();
    let mut scanned = 0;
    for oid in walk {
        let oid = oid?;
        scanned += 1;
        let commit = repo.find_commit(oid)?;
        let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
        let trailers = if message.contains("Hybrid-Task") { parse_trailers(&message) } else { None };
        let parents = commit.parent_count();
        if trailers.is_none() && parents <= 1 {
            continue;
        }
        let mut check = CommitCheck {
            commit: oid.to_string(),
            summary: commit.summary().unwrap_or("").to_string(),
            task: trailers.as_ref().map(|t| t.task.clone()),
            attempt: trailers.as_ref().map(|t| t.attempt.unwrap_or(1)),
            parents,
            status: String::new(),
            failures: Vec::new(),
            warnings: Vec::new(),
        };
        if parents > 1 && !allow_merges {
            check.failures.push(format!(
                "merge commit ({parents} parents) in {range}; landings must be single squash commits \
                 (pass --allow-merges or set [verify] allow_merge_commits = true to allow)"
            ));
        }
        if let Some(t) = &trailers {
            check_landing(repo, &ledger, &commit, t, &mut seen, &mut check)?;
        }
        check.status = if check.failures.is_empty() { "ok" } else { "failed" }.into();
        commits.push(check);
    }
    let failures = commits.iter().filter(|c| !c.failures.is_empty()).count();
    let warnings = commits.iter().map(|c| c.warnings.len()).sum();
    Ok(VerifyReport { range, since, scope, target, scanned, commits, failures, warnings, ok: failures == 0, rebuilt })
}

/// Where `--all` starts on `target`: the commits to stop at (excluded) and why. History from
/// before git-hybrid (merges, commits without trailers) is not its to judge. The floor
/// (`refs/hybrid/floor/<target>`, the parent of the first squash landed from this clone) when it
/// is in the target's history; else the parents of the oldest commit of the target with a
/// `Hybrid-Task` trailer (a fresh clone has no floor: one walk of the history); `None` when
/// git-hybrid never landed on the target.
fn first_landing(project: &Project, target: &str, tip: Oid) -> Result<Option<(Vec<Oid>, String)>> {
    let repo = &project.repo;
    let floor_ref = crate::names::floor_ref(target);
    if let Ok(floor) = repo.refname_to_id(&floor_ref) {
        if floor == tip || repo.graph_descendant_of(tip, floor).unwrap_or(false) {
            return Ok(Some((
                vec![floor],
                format!(
                    "since the first git-hybrid landing (after {}, {floor_ref}); use --since REV to start elsewhere",
                    short(&floor.to_string())
                ),
            )));
        }
    }
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
    walk.push(tip)?;
    for oid in walk {
        let commit = repo.find_commit(oid?)?;
        if crate::trailers::of_commit(&commit).is_none() {
            continue;
        }
        let parents: Vec<Oid> = commit.parent_ids().collect();
        let after = match parents.first() {
            Some(p) => format!("after {}", short(&p.to_string())),
            None => "from the root".to_string(),
        };
        return Ok(Some((
            parents,
            format!(
                "since the first git-hybrid landing ({} {after}); use --since REV to start elsewhere",
                short(&commit.id().to_string())
            ),
        )));
    }
    Ok(None)
}

/// Adds `A..B` (or a single revision) to the walk; unknown revisions are bad input.
fn push_range(project: &Project, walk: &mut git2::Revwalk<'_>, range: &str) -> Result<()> {
    if range.contains("...") {
        return Err(HybridError::Usage(format!("symmetric ranges are not supported: {range:?}; use A..B")).into());
    }
    match range.split_once("..") {
        Some((a, b)) => {
            let a = if a.is_empty() { "HEAD" } else { a };
            let b = if b.is_empty() { "HEAD" } else { b };
            let from = project.resolve_commit(a)?;
            let to = project.resolve_commit(b)?;
            walk.push(to)?;
            walk.hide(from)?;
        }
        None => walk.push(project.resolve_commit(range)?)?,
    }
    Ok(())
}

fn check_landing(
    repo: &Repository,
    ledger: &crate::ledger::Ledger,
    commit: &git2::Commit<'_>,
    t: &LandingTrailers,
    seen: &mut HashMap<(String, u32), Oid>,
    check: &mut CommitCheck,
) -> Result<()> {
    let attempt = t.attempt.unwrap_or(1);
    if t.bad_attempt {
        check.failures.push("Hybrid-Attempt is not a positive number".into());
    }
    let id_ok = crate::task_id::validate(&t.task).is_ok();
    if !id_ok {
        check.failures.push(format!("Hybrid-Task {:?} is not a valid task id", t.task));
    }
    if commit.parent_count() != 1 {
        check.failures.push(format!(
            "a landing has exactly one parent; this commit has {} (Hybrid-Task {})",
            commit.parent_count(),
            t.task
        ));
    }
    let base = commit_trailer(repo, "Hybrid-Base", t.base.as_deref(), check);
    let tip = commit_trailer(repo, "Hybrid-Tip", t.tip.as_deref(), check);
    if let (Some(b), Ok(parent)) = (base.as_ref().and_then(|b| b.as_ref().ok().copied()), commit.parent_id(0)) {
        if commit.parent_count() == 1 && parent != b {
            check.failures.push(format!(
                "wrong parent: the parent is {} but Hybrid-Base says {}",
                short(&parent.to_string()),
                short(&b.to_string())
            ));
        }
    }
    match (base, tip) {
        (Some(Ok(b)), Some(Ok(tp))) => {
            if let Some(expected) = merged_tree(repo, b, tp, check)? {
                if expected != commit.tree_id() {
                    let paths = tree_diff_paths(repo, expected, commit.tree_id())?;
                    check.failures.push(format!(
                        "tree mismatch: the commit's tree is not the merge of Hybrid-Base and Hybrid-Tip ({} path(s) differ: {})",
                        paths.len(),
                        preview(&paths)
                    ));
                }
            }
        }
        (_, Some(Err(missing))) => check
            .warnings
            .push(format!("Hybrid-Tip {} unavailable (fetch refs/hybrid/tips/*); tree not checked", short(&missing))),
        _ => {}
    }
    let key = (t.task.clone(), attempt);
    if let Some(first) = seen.get(&key) {
        check.failures.push(format!(
            "task {} attempt {attempt} already landed in this range as {}",
            t.task,
            short(&first.to_string())
        ));
    } else {
        seen.insert(key, commit.id());
    }
    if id_ok {
        if let Some(rec) = ledger.get(&t.task, attempt)? {
            compare_record(&rec, "the ledger", commit, t, attempt, check);
        }
        // What the landing published with it (`refs/hybrid/ledger/<id>/<attempt>`, fetched by
        // `git hybrid fetch` or a CI job): a landing it does not name is not the one that landed.
        if let Some(rec) = crate::remote::published::published_record(repo, &t.task, attempt) {
            let source = format!("the published ledger ({})", crate::remote::ledger_ref(&t.task, attempt));
            compare_record(&rec, &source, commit, t, attempt, check);
        }
    }
    Ok(())
}

/// Checks a ledger record (`source`: which ledger) of the task attempt `t` names against `commit`.
fn compare_record(
    rec: &crate::ledger::TaskRecord,
    source: &str,
    commit: &git2::Commit<'_>,
    t: &LandingTrailers,
    attempt: u32,
    check: &mut CommitCheck,
) {
    let me = commit.id().to_string();
    match rec.merge_sha.as_deref() {
        Some(m) if m != me => check.failures.push(format!(
            "{source} records task {} attempt {attempt} as landed in {}, not this commit (forged trailer or amended squash)",
            t.task,
            short(m)
        )),
        Some(_) => {
            if let (Some(lb), Some(tb)) = (&rec.merge_base, &t.base) {
                if lb != tb {
                    check.failures.push(format!(
                        "Hybrid-Base {} disagrees with {source}'s merge base {}",
                        short(tb),
                        short(lb)
                    ));
                }
            }
            if let (Some(lt), Some(tt)) = (&rec.tip, &t.tip) {
                if lt != tt {
                    check.failures.push(format!(
                        "Hybrid-Tip {} disagrees with {source}'s landed tip {}",
                        short(tt),
                        short(lt)
                    ));
                }
            }
        }
        None => check.warnings.push(format!(
            "{source} has task {} attempt {attempt} in state {} with no landing recorded",
            t.task,
            rec.state.as_str()
        )),
    }
}

/// Resolves a trailer naming a commit: `None` when absent (a failure is recorded), `Some(Err(sha))`
/// when it is a well-formed id whose object is not here, `Some(Ok(oid))` when present.
fn commit_trailer(
    repo: &Repository,
    name: &str,
    value: Option<&str>,
    check: &mut CommitCheck,
) -> Option<std::result::Result<Oid, String>> {
    let Some(v) = value else {
        check.failures.push(format!("missing {name} trailer"));
        return None;
    };
    let oid = match Oid::from_str(v) {
        Ok(o) if v.len() == 40 || v.len() == 64 => o,
        _ => {
            check.failures.push(format!("{name} {v:?} is not a full commit id"));
            return None;
        }
    };
    match repo.find_commit(oid) {
        Ok(_) => Some(Ok(oid)),
        Err(_) if name == "Hybrid-Base" => {
            check.failures.push(format!("{name} {} is not in the repository", short(v)));
            None
        }
        Err(_) => Some(Err(v.to_string())),
    }
}

/// The tree of merging `base` with `tip` (the tip's tree when it descends from base).
fn merged_tree(repo: &Repository, base: Oid, tip: Oid, check: &mut CommitCheck) -> Result<Option<Oid>> {
    let tip_commit = repo.find_commit(tip)?;
    if crate::git::graph::contains(repo, tip, base).unwrap_or(false) {
        return Ok(Some(tip_commit.tree_id()));
    }
    let base_commit = repo.find_commit(base)?;
    let mut index = repo.merge_commits(&base_commit, &tip_commit, None).context("cannot merge base and tip")?;
    if index.has_conflicts() {
        check.failures.push("Hybrid-Base and Hybrid-Tip conflict, so no squash of them can exist".into());
        return Ok(None);
    }
    Ok(Some(index.write_tree_to(repo).context("cannot write the merged tree")?))
}

fn tree_diff_paths(repo: &Repository, a: Oid, b: Oid) -> Result<Vec<String>> {
    let (ta, tb) = (repo.find_tree(a)?, repo.find_tree(b)?);
    let diff = repo.diff_tree_to_tree(Some(&ta), Some(&tb), None)?;
    let mut out: Vec<String> = diff
        .deltas()
        .filter_map(|d| d.new_file().path().or(d.old_file().path()).map(|p| p.to_string_lossy().into_owned()))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

fn preview(paths: &[String]) -> String {
    let mut s = paths.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 5 {
        s.push_str(", ...");
    }
    s
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// The report as JUnit XML: one test case per checked commit.
pub fn junit_xml(report: &VerifyReport) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let n = report.commits.len();
    x.push_str(&format!("<testsuites name=\"git-hybrid verify\" tests=\"{n}\" failures=\"{}\">\n", report.failures));
    x.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{n}\" failures=\"{}\" errors=\"0\" skipped=\"0\">\n",
        xml_escape(&format!("git-hybrid verify {}", report.range)),
        report.failures
    ));
    for c in &report.commits {
        let what = match &c.task {
            Some(t) => format!("{} {t}", short(&c.commit)),
            None => format!("{} merge commit", short(&c.commit)),
        };
        x.push_str(&format!(
            "    <testcase classname=\"git-hybrid.verify\" name=\"{}\">\n",
            xml_escape(&format!("{what}: {}", c.summary))
        ));
        if !c.failures.is_empty() {
            x.push_str(&format!(
                "      <failure message=\"{}\">{}</failure>\n",
                xml_escape(&c.failures[0]),
                xml_escape(&format!("commit {}\n{}", c.commit, c.failures.join("\n")))
            ));
        }
        if !c.warnings.is_empty() {
            x.push_str(&format!("      <system-out>{}</system-out>\n", xml_escape(&c.warnings.join("\n"))));
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_parse() {
        let msg = "Land t1\n\nbody\n\nHybrid-Task: t1\nHybrid-Base: abc\nHybrid-Tip: def\nHybrid-Attempt: 2\n";
        let t = parse_trailers(msg).unwrap();
        assert_eq!(t.task, "t1");
        assert_eq!(t.attempt, Some(2));
        assert_eq!(t.base.as_deref(), Some("abc"));
        assert!(parse_trailers("plain\n\nSigned-off-by: x\n").is_none());
    }

    #[test]
    fn xml_is_escaped() {
        assert_eq!(xml_escape("a<b&\"c\u{1}"), "a&lt;b&amp;&quot;c");
    }
}
