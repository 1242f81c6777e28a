//! `git hybrid demo`: a sample repository and a plan, dispatched with the built-in agents.
//!
//! Contract: [`create`] writes the sample repository (embedded in the binary from
//! `fixtures/demo/repo`, so nothing is read at run time) into a folder that does not exist or
//! is empty (anything else is refused with exit 2 and left untouched), commits it on `main`,
//! tags that commit `demo-start`, and prepares the branch of `tagline-b` with an older edit of
//! the README tagline. [`run`] dispatches the plan. Everything stays inside the folder (task
//! worktrees in its ignored `.worktrees/`). Needs only `git` and `sh`: no network, no API key.
//!
//! The plan shows every scheduling rule: plugin tasks in parallel, two core tasks that
//! serialize, a dependency chain, a task whose verify fails once and passes on the retry, and
//! a pair of tasks that conflict (one lands, the other is reported with the file).

use std::path::Path;

use anyhow::{Context, Result};

use crate::dispatch::{self, DispatchOptions, DispatchReport, Event};
use crate::error::HybridError;
use crate::repo::Project;

/// The sample repository's files (path, contents), compiled into the binary.
pub const FILES: &[(&str, &str)] = &[
    ("README.md", include_str!("../fixtures/demo/repo/README.md")),
    (".gitignore", include_str!("../fixtures/demo/repo/.gitignore")),
    ("hybrid.toml", include_str!("../fixtures/demo/repo/hybrid.toml")),
    ("app.sh", include_str!("../fixtures/demo/repo/app.sh")),
    ("src/core/log.sh", include_str!("../fixtures/demo/repo/src/core/log.sh")),
    ("src/core/config.sh", include_str!("../fixtures/demo/repo/src/core/config.sh")),
    ("src/plugins/hello/plugin.sh", include_str!("../fixtures/demo/repo/src/plugins/hello/plugin.sh")),
    ("checks/verify.sh", include_str!("../fixtures/demo/repo/checks/verify.sh")),
    ("demo/agents/dice.sh", include_str!("../fixtures/demo/repo/demo/agents/dice.sh")),
    ("demo/agents/config.sh", include_str!("../fixtures/demo/repo/demo/agents/config.sh")),
    ("demo/agents/index.sh", include_str!("../fixtures/demo/repo/demo/agents/index.sh")),
    ("demo/agents/notes.sh", include_str!("../fixtures/demo/repo/demo/agents/notes.sh")),
    ("demo/agents/tagline.sh", include_str!("../fixtures/demo/repo/demo/agents/tagline.sh")),
    ("demo/patches/greet.patch", include_str!("../fixtures/demo/repo/demo/patches/greet.patch")),
    ("demo/patches/clock.patch", include_str!("../fixtures/demo/repo/demo/patches/clock.patch")),
    ("demo/patches/logging.patch", include_str!("../fixtures/demo/repo/demo/patches/logging.patch")),
];

/// The tagline already on `hybrid/tagline-b` before the dispatch (the conflicting edit).
const OLD_TAGLINE_B: &str = "Tagline: the tiniest app there is.";

/// What each task is expected to end as (the demo checks itself against this).
pub const EXPECTED: &[(&str, &str)] = &[
    ("plugin-greet", "landed"),
    ("plugin-clock", "landed"),
    ("plugin-dice", "landed"),
    ("core-logging", "landed"),
    ("core-config", "landed"),
    ("plugin-index", "landed"),
    ("release-notes", "landed"),
    ("tagline-a", "landed"),
    ("tagline-b", "conflict"),
];

/// Writes the sample repository into `dir` (which must not exist or be empty).
pub fn create(dir: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(HybridError::Usage(format!("{} exists and is not a folder", dir.display())).into());
        }
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() {
            return Err(HybridError::Usage(format!(
                "{} is not empty; give a new or empty folder (or none for a temporary one)",
                dir.display()
            ))
            .into());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (rel, text) in FILES {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    // Why the git CLI: this is a brand-new repository made exactly as a user would make it.
    let git = |args: &[&str]| crate::git::run(dir, args).with_context(|| format!("git {}", args.join(" ")));
    git(&["init", "-q"])?;
    git(&["symbolic-ref", "HEAD", "refs/heads/main"])?;
    // A fresh machine may have no identity or may sign commits: keep the demo self-contained.
    git(&["config", "user.name", "git-hybrid demo"])?;
    git(&["config", "user.email", "demo@git-hybrid.invalid"])?;
    git(&["config", "commit.gpgsign", "false"])?;
    // Hooks from a global `core.hooksPath` or template must not judge the sample's commits.
    let no_hooks = dir.join(".git").join("demo-no-hooks");
    std::fs::create_dir_all(&no_hooks)?;
    git(&["config", "core.hooksPath", &no_hooks.to_string_lossy()])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "--no-verify", "-m", "tiny-app: a core and one plugin"])?;
    git(&["tag", "demo-start"])?;
    prepare_tagline_b(dir)?;
    Ok(())
}

/// Commits an older tagline edit on `hybrid/tagline-b` (as if an agent had started it earlier).
fn prepare_tagline_b(dir: &Path) -> Result<()> {
    let repo = git2::Repository::open(dir)?;
    let head = repo.head()?.peel_to_commit()?;
    let tree = head.tree()?;
    let entry = tree.get_path(Path::new("README.md"))?;
    let blob = repo.find_blob(entry.id())?;
    let text = String::from_utf8_lossy(blob.content()).into_owned();
    let edited: String = text
        .lines()
        .map(|l| if l.starts_with("Tagline: ") { OLD_TAGLINE_B.to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let new_blob = repo.blob(edited.as_bytes())?;
    let mut tb = repo.treebuilder(Some(&tree))?;
    tb.insert("README.md", new_blob, entry.filemode())?;
    let new_tree = repo.find_tree(tb.write()?)?;
    let author = crate::git::signature(&repo, crate::git::Role::Author)?;
    let committer = crate::git::signature(&repo, crate::git::Role::Committer)?;
    repo.commit(
        Some("refs/heads/hybrid/tagline-b"),
        &author,
        &committer,
        "README: shorter tagline (started before tagline-a landed)",
        &new_tree,
        &[&head],
    )?;
    Ok(())
}

/// Dispatches the demo plan in `dir` (made by [`create`]).
pub fn run(dir: &Path, jobs: Option<usize>, on_event: &mut dyn FnMut(&Event)) -> Result<DispatchReport> {
    let project = Project::open(dir)?;
    dispatch::dispatch(&project, &DispatchOptions { plan_file: None, jobs }, on_event)
}

/// Tasks whose outcome differs from [`EXPECTED`], as `(id, expected, got)`.
pub fn surprises(report: &DispatchReport) -> Vec<(String, String, String)> {
    EXPECTED
        .iter()
        .filter_map(|(id, want)| {
            let got = report.tasks.iter().find(|t| t.id == *id).map(|t| t.state.clone()).unwrap_or_default();
            (got != *want).then(|| (id.to_string(), want.to_string(), got))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn plan_parses_and_validates() {
        let text = super::FILES.iter().find(|(p, _)| *p == "hybrid.toml").unwrap().1;
        let loaded = crate::config::parse(std::path::Path::new("hybrid.toml"), text).unwrap();
        let plan = crate::plan::validate(&loaded, &loaded, "src/plugins", std::path::Path::new("/demo")).unwrap();
        assert_eq!(plan.tasks.len(), super::EXPECTED.len());
        for (t, (id, _)) in plan.tasks.iter().zip(super::EXPECTED) {
            assert_eq!(&t.id, id);
        }
    }

    #[test]
    fn every_fixture_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo/repo");
        let mut found = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    found.push(p.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        let mut embedded: Vec<String> = super::FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(found, embedded);
    }
}
