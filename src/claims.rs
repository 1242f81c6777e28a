//! The paths a task may change: its claims.
//!
//! Contract: a task attempt's claims are fixed when it starts and kept in its ledger record
//! (`claims`): `git hybrid dispatch` records the claims of the plan it runs (`--plan FILE` or
//! `hybrid.toml`), and `git hybrid start` records those of the task's `[[task]]` entry in
//! `hybrid.toml` when it has one. Editing a plan afterwards does not change a started
//! attempt's claims. A record without claims (`null`: started with no plan entry, or by an
//! older version) falls back to the task's `[[task]]` entry in the main checkout's
//! `hybrid.toml` at the time of the check. A plan entry claims every `touches` glob, plus
//! `<plugin_root>/<plugin>/**` when it names a plugin. Globs use `globset` with `*` not
//! crossing `/` and `**` crossing it; an entry that names a folder (`src/core` or `src/core/`)
//! also claims everything under it. A task with no claims (`[]`, or no plan entry, or an entry
//! with neither `touches` nor `plugin`) is unrestricted: [`for_record`] returns `None`.

use anyhow::{Context, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::ledger::TaskRecord;
use crate::repo::Project;

/// The compiled claims of one task.
#[derive(Debug, Clone)]
pub struct Claims {
    /// The claim patterns as written (plus the plugin folder), for messages.
    pub patterns: Vec<String>,
    set: GlobSet,
}

impl Claims {
    /// Compiles claim patterns; a bad glob is reported with the pattern.
    pub fn new(patterns: Vec<String>) -> Result<Claims> {
        let mut b = GlobSetBuilder::new();
        for p in &patterns {
            let trimmed = p.trim_start_matches("./").trim_end_matches('/');
            for g in expand(trimmed) {
                let glob = GlobBuilder::new(&g)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .with_context(|| format!("bad claim glob {p:?}"))?;
                b.add(glob);
            }
        }
        let set = b.build().context("cannot compile the claim globs")?;
        Ok(Claims { patterns, set })
    }

    /// Whether a repository-relative path (with `/` separators) is inside the claims.
    pub fn allows(&self, path: &str) -> bool {
        self.set.is_match(path)
    }

    /// The patterns joined for a message.
    pub fn describe(&self) -> String {
        self.patterns.join(", ")
    }
}

/// A pattern and, unless it already ends in `**`, the folder reading `pattern/**`.
fn expand(p: &str) -> Vec<String> {
    if p.is_empty() {
        return vec!["**".into()];
    }
    if p.ends_with("/**") || p == "**" {
        vec![p.to_string()]
    } else {
        vec![p.to_string(), format!("{p}/**")]
    }
}

/// The claim patterns of a task's `[[task]]` entries in `hybrid.toml`, or `None` when it has no
/// entry there (an entry with neither `touches` nor `plugin` gives `Some([])`: unrestricted).
pub fn plan_entry_patterns(project: &Project, id: &str) -> Option<Vec<String>> {
    let plugin_root = project.plugin_root();
    let mut out: Option<Vec<String>> = None;
    for t in &project.config.config.tasks {
        let t = t.get_ref();
        if t.id.get_ref() != id {
            continue;
        }
        let out = out.get_or_insert_with(Vec::new);
        out.extend(t.touches.iter().map(|s| s.get_ref().clone()));
        if let Some(plugin) = &t.plugin {
            out.push(format!("{}/{}/**", plugin_root.trim_end_matches('/'), plugin.get_ref()));
        }
    }
    out
}

/// The claim patterns of a task from the plan in `hybrid.toml` (empty when unrestricted).
pub fn patterns_for_task(project: &Project, id: &str) -> Vec<String> {
    plan_entry_patterns(project, id).unwrap_or_default()
}

/// A task's compiled claims from `hybrid.toml`, or `None` when it has none (unrestricted).
pub fn for_task(project: &Project, id: &str) -> Result<Option<Claims>> {
    compile(patterns_for_task(project, id))
}

/// An attempt's compiled claims: the ones its ledger record holds, else (`null`) those of
/// `hybrid.toml` now; `None` when unrestricted.
pub fn for_record(project: &Project, rec: &TaskRecord) -> Result<Option<Claims>> {
    match &rec.claims {
        Some(patterns) => compile(patterns.clone()),
        None => for_task(project, &rec.id),
    }
}

fn compile(patterns: Vec<String>) -> Result<Option<Claims>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    Claims::new(patterns).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_folders() {
        let c = Claims::new(vec!["src/plugins/login/**".into(), "docs/*.md".into(), "src/core".into()]).unwrap();
        assert!(c.allows("src/plugins/login/a/b.rs"));
        assert!(c.allows("docs/x.md"));
        assert!(!c.allows("docs/sub/x.md"));
        assert!(c.allows("src/core"));
        assert!(c.allows("src/core/lib.rs"));
        assert!(!c.allows("src/corex/lib.rs"));
        assert!(!c.allows("README.md"));
    }
}
