//! The checks [`super::validate`] runs on single plan entries: dependency cycles, agent
//! commands, prompt files, repository paths and claim globs (git-style: `*` within one path
//! component, `**` across components).

use std::collections::HashMap;
use std::path::Path;

use crate::config::TaskSpec;

use super::{PlanTask, BUILTIN_PREFIX};

/// A cycle as (task index, position in its depends_on, names along the cycle).
pub(super) fn find_cycle(tasks: &[PlanTask]) -> Option<(usize, usize, Vec<String>)> {
    let idx: HashMap<&str, usize> = tasks.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut color = vec![0u8; tasks.len()];
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        tasks: &[PlanTask],
        idx: &HashMap<&str, usize>,
        color: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<(usize, usize, Vec<String>)> {
        color[i] = 1;
        stack.push(i);
        for (pos, d) in tasks[i].depends_on.iter().enumerate() {
            let Some(&j) = idx.get(d.as_str()) else { continue };
            if color[j] == 1 {
                let start = stack.iter().position(|&s| s == j).unwrap_or(0);
                let mut names: Vec<String> = stack[start..].iter().map(|&s| tasks[s].id.clone()).collect();
                names.push(tasks[j].id.clone());
                return Some((i, pos, names));
            }
            if color[j] == 0 {
                if let Some(c) = visit(j, tasks, idx, color, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        color[i] = 2;
        None
    }
    for i in 0..tasks.len() {
        if color[i] == 0 {
            if let Some(c) = visit(i, tasks, &idx, &mut color, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// Checks that an agent argv can run: built-ins with their arguments, others non-empty.
pub(super) fn check_agent(argv: &[String], spec: &TaskSpec) -> std::result::Result<(), String> {
    let Some(first) = argv.first() else {
        return Err("the agent command is empty".into());
    };
    if first.is_empty() {
        return Err("the agent command's program is empty".into());
    }
    if let Some(name) = first.strip_prefix(BUILTIN_PREFIX) {
        match name {
            "patch" => {
                if spec.patch.is_none() {
                    return Err(format!(
                        "task {:?} uses builtin:patch but has no `patch = \"<path in the repo>\"`",
                        spec.id.get_ref()
                    ));
                }
            }
            "script" => {
                let Some(script) = argv.get(1) else {
                    return Err(
                        "builtin:script needs the script's path: [\"builtin:script\", \"<path in the repo>\"]".into()
                    );
                };
                check_repo_path(script).map_err(|m| format!("builtin:script path: {m}"))?;
            }
            other => {
                return Err(format!(
                    "unknown built-in agent `builtin:{other}` (there are builtin:patch and builtin:script)"
                ))
            }
        }
    }
    Ok(())
}

/// Reads a `prompt_file`: a relative path (no `..`), taken from the plan file's folder, that
/// must resolve (symlinks followed) to a file inside the repository `root`. An agent can land a
/// `hybrid.toml`, so a prompt file must never pull a file from elsewhere on the host (a key, a
/// token) into a prompt.
pub(super) fn read_prompt_file(plan_path: &Path, root: &Path, rel: &str) -> std::result::Result<String, String> {
    check_repo_path(rel)?;
    let dir = plan_path.parent().unwrap_or(root);
    let file = dir.join(rel);
    let real = std::fs::canonicalize(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let real_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    if !real.starts_with(&real_root) {
        return Err(format!(
            "{rel:?} resolves to {}, outside the repository {}; a prompt file must be inside the repository",
            real.display(),
            real_root.display()
        ));
    }
    match crate::config::read_text(&real) {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err(format!("cannot read {}: no such file", file.display())),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// A relative path inside the repository: not absolute, no `..`.
pub(super) fn check_repo_path(p: &str) -> std::result::Result<(), String> {
    if p.is_empty() {
        return Err("the path is empty".into());
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(format!("{p:?} must be a path inside the repository, not an absolute path"));
    }
    if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("{p:?} must not contain '..'"));
    }
    crate::safe_path::check(p.trim_start_matches("./").as_bytes(), false)
        .map_err(|why| format!("{p:?} is not a path git accepts: {why}"))
}

/// Glob metacharacters (the literal prefix of a claim ends at the first one).
pub fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// Checks a `touches` glob and returns it normalised (no leading `./`, no trailing `/`).
pub fn normalize_glob(raw: &str) -> std::result::Result<String, String> {
    let mut g = raw.trim();
    while let Some(rest) = g.strip_prefix("./") {
        g = rest;
    }
    let g = g.trim_end_matches('/');
    if g.is_empty() {
        return Err(format!("bad glob {raw:?}: it is empty"));
    }
    if g.starts_with('/') {
        return Err(format!("bad glob {raw:?}: claims are paths relative to the repository root"));
    }
    if g.split('/').any(|c| c == "..") {
        return Err(format!("bad glob {raw:?}: '..' is not allowed"));
    }
    compile_claim(g).map_err(|e| format!("bad glob {raw:?}: {e}"))?;
    Ok(g.to_string())
}

/// Compiles a claim glob with git-style separators (`*` within a component, `**` across).
pub fn compile_claim(glob: &str) -> std::result::Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(glob).literal_separator(true).build()?.compile_matcher())
}

/// Byte offset of `key = ...` inside a span of the file (the span start when absent).
pub(super) fn key_offset(text: &str, span: std::ops::Range<usize>, key: &str) -> usize {
    let end = span.end.min(text.len());
    let start = span.start.min(end);
    let slice = &text[start..end];
    let mut off = 0;
    for line in slice.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return start + off + (line.len() - trimmed.len());
            }
        }
        off += line.len();
    }
    span.start
}
