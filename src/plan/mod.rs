//! The dispatch plan: `[[task]]` entries, validated as a whole before anything starts.
//!
//! Contract: [`load`] reads the tasks of `hybrid.toml` (or of a `--plan FILE` with the same
//! schema; other sections in that file are accepted and override the matching `hybrid.toml`
//! settings for this dispatch) and checks the whole plan before any worktree, ref or ledger
//! record is touched. Every problem is a [`HybridError::Config`] (exit 2) located at
//! `file:line:col`: unknown keys, duplicate ids, invalid ids, dangling or cyclic `depends_on`,
//! `core` without `touches`, `plugin` shape without a plugin name, bad globs, missing or
//! conflicting prompts, and agent commands that cannot run (no command, a `builtin:patch` task
//! without `patch`, a `builtin:script` without its script path).
//!
//! Claims: a task claims its `touches` globs; a `plugin` task also claims
//! `<plugin_root>/<plugin>/**`. Globs are git-style: `*` stays within one path component,
//! `**` crosses components.
//!
//! Files: this one loads and validates the plan; `checks.rs` the checks of single entries
//! (dependency cycles, agent commands, prompt files, repository paths, claim globs).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use toml::Spanned;

use crate::config::{self, CommandSetting, LoadedConfig, Shape, TaskSpec};
use crate::error::HybridError;
use crate::repo::Project;

mod checks;

use checks::{check_agent, check_repo_path, find_cycle, key_offset, read_prompt_file};
pub use checks::{compile_claim, has_glob_meta, normalize_glob};

/// The default agent timeout (matches the `hybrid.toml` template).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The default number of agents run at once.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The built-in agents (defined with the agent runner that runs them).
pub use crate::agent::{BUILTIN_PATCH, BUILTIN_PREFIX, BUILTIN_SCRIPT};

/// A validated plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file the tasks came from.
    pub path: PathBuf,
    /// Tasks in plan order.
    pub tasks: Vec<PlanTask>,
    /// `[project] concurrency` (plan file first, then `hybrid.toml`).
    pub concurrency: usize,
    /// `[agent] env_pass` names.
    pub env_pass: Vec<String>,
    /// `[agent] sandbox`.
    pub sandbox: crate::agent::sandbox::Mode,
    /// `[agent] allow_write`, resolved.
    pub allow_write: Vec<PathBuf>,
}

impl Plan {
    /// The index of a task by id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.id == id)
    }
}

/// One validated task with every default filled in.
#[derive(Debug, Clone)]
pub struct PlanTask {
    pub id: String,
    /// Position in the plan (ties in priority run in plan order).
    pub index: usize,
    /// `file:line` of its `[[task]]` header, for messages.
    pub location: String,
    pub title: Option<String>,
    /// The prompt text (`prompt`, the contents of `prompt_file`, or the title).
    pub prompt: String,
    pub shape: Option<Shape>,
    /// Globs the task claims (touches plus the plugin folder).
    pub claims: Vec<String>,
    pub depends_on: Vec<String>,
    pub priority: i64,
    /// Best-of-K: how many attempts run (K >= 1).
    pub attempts: u32,
    /// Extra runs of one attempt after a failure.
    pub retries: u32,
    /// The agent argv (task override, else `[agent] command`).
    pub agent: Vec<String>,
    /// The verify argv (task override, else `[verify] command`); `None` passes.
    pub verify: Option<Vec<String>>,
    /// Patch file for `builtin:patch` (path in the repository).
    pub patch: Option<String>,
    pub timeout: Duration,
    /// Base revision of the task's branch (default: the target tip when it starts).
    pub base: Option<String>,
}

impl PlanTask {
    /// True for `shape = "core"` (single-flight).
    pub fn is_core(&self) -> bool {
        self.shape == Some(Shape::Core)
    }
}

/// Loads and validates the plan: `plan_file` if given, else the `[[task]]` entries of `hybrid.toml`.
pub fn load(project: &Project, plan_file: Option<&Path>) -> Result<Plan> {
    let plan_cfg = match plan_file {
        Some(p) => {
            let text = config::read_text(p)?.ok_or_else(|| {
                HybridError::Usage(format!("cannot read the plan file {}: no such file", crate::error::show(p)))
            })?;
            Some(config::parse(p, &text)?)
        }
        None => None,
    };
    let base = &project.config;
    let plan = plan_cfg.as_ref().unwrap_or(base);
    let resolves = |rev: &str| project.resolve_commit(rev).is_ok();
    let validated = validate_with(base, plan, &project.plugin_root(), &project.root, Some(&resolves))?;
    check_programs(project, &validated)?;
    Ok(validated)
}

/// Every agent program a task still to run needs must exist now, before any worktree is
/// made (exit 2, each task's `file:line`). Tasks the ledger has as landed or empty are skipped.
fn check_programs(project: &Project, plan: &Plan) -> Result<()> {
    let ledger = project.ledger();
    let mut problems = Vec::new();
    for t in &plan.tasks {
        let Some(why) = crate::agent::missing_program(&t.agent, &plan.env_pass) else { continue };
        if ledger.attempts(&t.id)?.iter().any(|r| r.state.is_done()) {
            continue;
        }
        problems.push(HybridError::Config { location: t.location.clone(), message: format!("task {:?}: {why}", t.id) });
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(all_problems(problems).into())
}

/// Validates the tasks of `plan` (whose other sections, when set, override `base`).
///
/// `root` is where a plan without a file (no `hybrid.toml`) would live; prompt files are
/// read relative to the plan file's folder. Task `base` revisions are not checked (see
/// [`load`], which has the repository).
pub fn validate(
    base: &LoadedConfig,
    plan: &LoadedConfig,
    default_plugin_root: &str,
    root: &Path,
) -> std::result::Result<Plan, HybridError> {
    validate_with(base, plan, default_plugin_root, root, None)
}

/// Every problem found, in file order, as one [`HybridError::Config`]: located at the first,
/// its message followed by one `file:line:col: reason` line per further problem.
fn all_problems(mut problems: Vec<HybridError>) -> HybridError {
    let first = problems.remove(0);
    if problems.is_empty() {
        return first;
    }
    let n = problems.len() + 1;
    match first {
        HybridError::Config { location, message } => {
            let rest: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            HybridError::Config {
                location,
                message: format!("{message}\n{}\n({n} problems in the plan)", rest.join("\n")),
            }
        }
        other => other,
    }
}

/// [`validate`], also checking every task's `base` with `resolves` when given.
fn validate_with(
    base: &LoadedConfig,
    plan: &LoadedConfig,
    default_plugin_root: &str,
    root: &Path,
    resolves: Option<&dyn Fn(&str) -> bool>,
) -> std::result::Result<Plan, HybridError> {
    let path = plan.path.clone().unwrap_or_else(|| root.join(config::FILE_NAME));
    let pc = &plan.config;
    let bc = &base.config;
    let mut problems: Vec<(usize, HybridError)> = Vec::new();
    let mut bad = |offset: usize, message: String| problems.push((offset, plan.error_at(offset, message)));
    let plugin_root = pc.project.plugin_root.clone().unwrap_or_else(|| default_plugin_root.to_string());
    let plugin_root = plugin_root.trim_end_matches('/').to_string();
    let agent_cmd = pc.agent.command.clone().or_else(|| bc.agent.command.clone());
    let verify_cmd = pc.verify.command.clone().or_else(|| bc.verify.command.clone());
    let timeout = match pc.agent.timeout.as_ref().or(bc.agent.timeout.as_ref()) {
        Some(t) => t.to_duration().map_err(|e| plan.error_at(0, e))?,
        None => DEFAULT_TIMEOUT,
    };
    let concurrency = pc.project.concurrency.or(bc.project.concurrency).unwrap_or(DEFAULT_CONCURRENCY);
    let env_pass = if pc.agent.env_pass.is_empty() { bc.agent.env_pass.clone() } else { pc.agent.env_pass.clone() };
    for name in &env_pass {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            bad(
                key_offset(&plan.text, 0..plan.text.len(), "env_pass"),
                format!("`env_pass` holds {name:?}, which is not an environment variable name"),
            );
        }
    }

    if pc.tasks.is_empty() {
        return Err(plan.error_at(0, "the plan has no tasks: add [[task]] entries (id, prompt, ...)"));
    }

    let specs: Vec<&Spanned<TaskSpec>> = pc.tasks.iter().collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut tasks = Vec::with_capacity(specs.len());
    for (index, spanned) in specs.iter().enumerate() {
        let span = spanned.span();
        let spec = spanned.get_ref();
        let at_key = |key: &str| key_offset(&plan.text, span.clone(), key);
        let id = spec.id.get_ref().clone();
        if let Err(e) = crate::task_id::validate(&id) {
            bad(spec.id.span().start, e.to_string());
        }
        if let Some(first) = seen.get(&id) {
            let (line, _) = crate::error::line_col(&plan.text, specs[*first].span().start);
            bad(spec.id.span().start, format!("duplicate task id {id:?} (first defined at line {line})"));
        } else {
            seen.insert(id.clone(), index);
        }
        let (line, _) = crate::error::line_col(&plan.text, span.start);
        let location = format!("{}:{}", path.display(), line);

        // Prompt.
        let prompt = match (&spec.prompt, &spec.prompt_file) {
            (Some(_), Some(pf)) => {
                bad(pf.span().start, "set either `prompt` or `prompt_file`, not both".into());
                String::new()
            }
            (Some(p), None) => p.clone(),
            (None, Some(pf)) => read_prompt_file(&path, root, pf.get_ref()).unwrap_or_else(|m| {
                bad(pf.span().start, format!("`prompt_file`: {m}"));
                String::new()
            }),
            (None, None) => match &spec.title {
                Some(t) => t.clone(),
                None => {
                    bad(spec.id.span().start, format!("task {id:?} has no `prompt`, `prompt_file` or `title`"));
                    String::new()
                }
            },
        };

        // Shape and claims.
        let mut claims = Vec::new();
        match spec.shape {
            Some(Shape::Plugin) => match &spec.plugin {
                None => {
                    bad(at_key("shape"), format!("task {id:?} has shape = \"plugin\" but no `plugin = \"<name>\"`"))
                }
                Some(name) => {
                    let n = name.get_ref();
                    if n.is_empty() || n.contains('/') || n == "." || n == ".." || has_glob_meta(n) {
                        bad(
                            name.span().start,
                            format!("`plugin` {n:?} must be one folder name (no '/', no glob characters)"),
                        );
                    } else {
                        claims.push(format!("{plugin_root}/{n}/**"));
                    }
                }
            },
            Some(Shape::Core) if spec.touches.is_empty() => bad(
                at_key("shape"),
                format!(
                    "task {id:?} has shape = \"core\" but no `touches`: core tasks must declare the files they edit"
                ),
            ),
            Some(Shape::Core) | None => {}
        }
        if spec.plugin.is_some() && spec.shape != Some(Shape::Plugin) {
            let p = spec.plugin.as_ref().map(|p| p.span().start).unwrap_or(span.start);
            bad(p, "`plugin` is only meaningful with shape = \"plugin\"".into());
        }
        for t in &spec.touches {
            match normalize_glob(t.get_ref()) {
                Ok(g) if !claims.contains(&g) => claims.push(g),
                Ok(_) => {}
                Err(m) => bad(t.span().start, m),
            }
        }

        // Attempts and agent.
        let attempts = match &spec.attempts {
            Some(a) if *a.get_ref() == 0 => {
                bad(a.span().start, "`attempts` must be at least 1".into());
                1
            }
            Some(a) if *a.get_ref() > 16 => {
                bad(a.span().start, "`attempts` is at most 16".into());
                1
            }
            Some(a) => *a.get_ref(),
            None => 1,
        };
        let agent = match (&spec.agent, &agent_cmd) {
            (Some(a), _) => a.clone(),
            (None, Some(a)) => a.clone(),
            (None, None) => {
                bad(
                    spec.id.span().start,
                    format!("task {id:?} has no agent: set `[agent] command` or the task's `agent`"),
                );
                Vec::new()
            }
        };
        if spec.agent.is_some() || agent_cmd.is_some() {
            if let Err(m) = check_agent(&agent, spec) {
                let off = if spec.agent.is_some() { at_key("agent") } else { span.start };
                bad(off, m);
            }
        }
        let verify = match (&spec.verify, &verify_cmd) {
            (Some(v), _) => Some(v),
            (None, v) => v.as_ref(),
        }
        .map(CommandSetting::argv);
        if let Some(v) = &verify {
            if v.is_empty() || v[0].is_empty() {
                bad(at_key("verify"), "`verify` must not be empty".into());
            }
        }
        let timeout = match &spec.timeout {
            Some(t) => t.to_duration().unwrap_or_else(|e| {
                bad(at_key("timeout"), e);
                timeout
            }),
            None => timeout,
        };
        if timeout.is_zero() {
            bad(at_key("timeout"), "`timeout` must be longer than zero".into());
        }
        if let Some(p) = &spec.patch {
            if let Err(m) = check_repo_path(p) {
                bad(at_key("patch"), format!("`patch`: {m}"));
            }
        }
        if let (Some(rev), Some(resolves)) = (&spec.base, resolves) {
            if !resolves(rev) {
                bad(at_key("base"), format!("task {id:?}: `base` {rev:?} is not a commit in this repository"));
            }
        }

        tasks.push(PlanTask {
            id,
            index,
            location,
            title: spec.title.clone(),
            prompt,
            shape: spec.shape,
            claims,
            depends_on: spec.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
            priority: spec.priority,
            attempts,
            retries: spec.retries,
            agent,
            verify,
            patch: spec.patch.clone(),
            timeout,
            base: spec.base.clone(),
        });
    }

    // Dependencies: every name exists, no self-edge, no cycle.
    for spanned in &specs {
        let spec = spanned.get_ref();
        let mut local = HashSet::new();
        for d in &spec.depends_on {
            let name = d.get_ref();
            if !seen.contains_key(name) {
                bad(
                    d.span().start,
                    format!("task {:?} depends on {name:?}, which is not in the plan", spec.id.get_ref()),
                );
            } else if name == spec.id.get_ref() {
                bad(d.span().start, format!("task {name:?} depends on itself (dependency cycle)"));
            } else if !local.insert(name.clone()) {
                bad(d.span().start, format!("{name:?} is listed twice in depends_on"));
            }
        }
    }
    let self_edges =
        specs.iter().any(|s| s.get_ref().depends_on.iter().any(|d| d.get_ref() == s.get_ref().id.get_ref()));
    if !self_edges {
        if let Some((from, to_pos, cycle)) = find_cycle(&tasks) {
            let d = &specs[from].get_ref().depends_on[to_pos];
            bad(d.span().start, format!("dependency cycle: {}", cycle.join(" -> ")));
        }
    }

    let sandbox = match pc.agent.sandbox.as_ref().or(bc.agent.sandbox.as_ref()) {
        None => crate::agent::sandbox::Mode::default(),
        Some(v) => crate::agent::sandbox::Mode::parse(v).unwrap_or_else(|| {
            let offset = key_offset(&plan.text, 0..plan.text.len(), "sandbox");
            let message = format!("`sandbox` is {v:?}; expected \"landlock\" or \"off\"");
            problems.push((offset, plan.error_at(offset, message)));
            crate::agent::sandbox::Mode::default()
        }),
    };
    if !problems.is_empty() {
        problems.sort_by_key(|(offset, _)| *offset);
        return Err(all_problems(problems.into_iter().map(|(_, e)| e).collect()));
    }
    let allow_write = if pc.agent.allow_write.is_empty() { &bc.agent.allow_write } else { &pc.agent.allow_write };
    let allow_write = crate::agent::sandbox::resolve_allow_write(allow_write, root);
    Ok(Plan { path, tasks, concurrency, env_pass, sandbox, allow_write })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> std::result::Result<Plan, String> {
        let loaded = config::parse(Path::new("hybrid.toml"), text).map_err(|e| e.to_string())?;
        validate(&loaded, &loaded, "src/plugins", Path::new("/nonexistent")).map_err(|e| e.to_string())
    }

    const AGENT: &str = "[agent]\ncommand = [\"true\"]\n";

    fn err_of(text: &str) -> String {
        plan(&format!("{AGENT}{text}")).unwrap_err()
    }

    #[test]
    fn plugin_claims_and_defaults() {
        let p = plan(&format!(
            "{AGENT}[[task]]\nid = \"a\"\nprompt = \"x\"\nshape = \"plugin\"\nplugin = \"auth\"\ntouches = [\"./docs/a.md\"]\n"
        ))
        .unwrap();
        let t = &p.tasks[0];
        assert_eq!(t.claims, vec!["src/plugins/auth/**".to_string(), "docs/a.md".to_string()]);
        assert_eq!(t.attempts, 1);
        assert_eq!(t.agent, vec!["true".to_string()]);
        assert_eq!(t.timeout, DEFAULT_TIMEOUT);
        assert_eq!(p.concurrency, 4);
        assert!(t.location.ends_with("hybrid.toml:3"), "{}", t.location);
    }

    #[test]
    fn unknown_key_is_located() {
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\ncolour = 1\n");
        assert!(e.starts_with("hybrid.toml:6:1:"), "{e}");
        assert!(e.contains("unknown key `colour`"), "{e}");
    }

    #[test]
    fn duplicate_id() {
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\n\n[[task]]\nid = \"a\"\nprompt = \"y\"\n");
        assert!(e.starts_with("hybrid.toml:8:"), "{e}");
        assert!(e.contains("duplicate task id \"a\" (first defined at line 3)"), "{e}");
    }

    #[test]
    fn dangling_dependency() {
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\ndepends_on = [\"zz\"]\n");
        assert!(e.starts_with("hybrid.toml:6:"), "{e}");
        assert!(e.contains("\"zz\", which is not in the plan"), "{e}");
    }

    #[test]
    fn cycle_is_named() {
        let e = err_of(
            "[[task]]\nid = \"a\"\nprompt = \"x\"\ndepends_on = [\"b\"]\n\n[[task]]\nid = \"b\"\nprompt = \"x\"\ndepends_on = [\"c\"]\n\n[[task]]\nid = \"c\"\nprompt = \"x\"\ndepends_on = [\"a\"]\n",
        );
        assert!(e.contains("dependency cycle: "), "{e}");
        assert!(e.contains("a -> b -> c -> a"), "{e}");
        assert!(e.starts_with("hybrid.toml:16:"), "{e}");
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\ndepends_on = [\"a\"]\n");
        assert!(e.contains("depends on itself"), "{e}");
    }

    #[test]
    fn core_needs_touches() {
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\nshape = \"core\"\n");
        assert!(e.starts_with("hybrid.toml:6:1:"), "{e}");
        assert!(e.contains("no `touches`"), "{e}");
    }

    #[test]
    fn bad_globs() {
        for g in ["src/[a", "/etc/passwd", "../x/**", ""] {
            let e = err_of(&format!("[[task]]\nid = \"a\"\nprompt = \"x\"\ntouches = [\"ok/**\", \"{g}\"]\n"));
            assert!(e.starts_with("hybrid.toml:6:"), "{g}: {e}");
            assert!(e.contains("bad glob"), "{e}");
        }
    }

    #[test]
    fn plugin_shape_needs_name() {
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\nshape = \"plugin\"\n");
        assert!(e.contains("no `plugin"), "{e}");
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\nshape = \"plugin\"\nplugin = \"a/b\"\n");
        assert!(e.starts_with("hybrid.toml:7:"), "{e}");
    }

    #[test]
    fn agents_are_checked() {
        let e = plan("[[task]]\nid = \"a\"\nprompt = \"x\"\n").unwrap_err();
        assert!(e.contains("has no agent"), "{e}");
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\nagent = [\"builtin:patch\"]\n");
        assert!(e.starts_with("hybrid.toml:6:1:"), "{e}");
        assert!(e.contains("no `patch"), "{e}");
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\nagent = [\"builtin:script\"]\n");
        assert!(e.contains("script's path"), "{e}");
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\nagent = [\"builtin:nope\"]\n");
        assert!(e.contains("unknown built-in"), "{e}");
        plan(&format!("{AGENT}[[task]]\nid = \"a\"\nprompt = \"x\"\nagent = [\"builtin:script\", \"s.sh\"]\n"))
            .unwrap();
    }

    #[test]
    fn prompts() {
        let e = err_of("[[task]]\nid = \"a\"\n");
        assert!(e.contains("no `prompt`"), "{e}");
        let p = plan(&format!("{AGENT}[[task]]\nid = \"a\"\ntitle = \"Do it\"\n")).unwrap();
        assert_eq!(p.tasks[0].prompt, "Do it");
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\nprompt_file = \"p.md\"\n");
        assert!(e.contains("not both"), "{e}");
        let e = err_of("[[task]]\nid = \"a\"\nprompt_file = \"missing.md\"\n");
        assert!(e.starts_with("hybrid.toml:5:"), "{e}");
    }

    #[test]
    fn bad_ids_and_attempts() {
        let e = err_of("[[task]]\nid = \"../x\"\nprompt = \"x\"\n");
        assert!(e.starts_with("hybrid.toml:4:"), "{e}");
        let e = err_of("[[task]]\nid = \"a\"\nprompt = \"x\"\nattempts = 0\n");
        assert!(e.starts_with("hybrid.toml:6:"), "{e}");
    }

    #[test]
    fn every_problem_is_reported() {
        let e = err_of(
            "[[task]]\nid = \"a\"\nprompt = \"x\"\nattempts = 0\n\n[[task]]\nid = \"a\"\nshape = \"core\"\nprompt = \"y\"\ndepends_on = [\"ghost\"]\n",
        );
        assert!(e.starts_with("hybrid.toml:6:12: `attempts` must be at least 1\n"), "{e}");
        for line in
            ["hybrid.toml:9:", "duplicate task id", "hybrid.toml:10:1:", "no `touches`", "hybrid.toml:12:", "ghost"]
        {
            assert!(e.contains(line), "{line}: {e}");
        }
        assert!(e.ends_with("(4 problems in the plan)"), "{e}");
    }

    #[test]
    fn empty_plan() {
        assert!(err_of("").contains("no tasks"));
    }

    #[test]
    fn plan_file_sections_override() {
        let base = config::parse(Path::new("hybrid.toml"), "[agent]\ncommand = [\"a\"]\n[project]\nconcurrency = 2\n")
            .unwrap();
        let pl = config::parse(
            Path::new("/p/plan.toml"),
            "[agent]\ncommand = [\"b\"]\n[verify]\ncommand = \"make test\"\n[[task]]\nid = \"t\"\nprompt = \"x\"\n",
        )
        .unwrap();
        let p = validate(&base, &pl, "src/plugins", Path::new("/r")).unwrap();
        assert_eq!(p.tasks[0].agent, vec!["b".to_string()]);
        assert_eq!(p.tasks[0].verify.as_ref().unwrap(), &vec!["sh".to_string(), "-c".into(), "make test".into()]);
        assert_eq!(p.concurrency, 2);
        assert_eq!(p.path, PathBuf::from("/p/plan.toml"));
    }
}
