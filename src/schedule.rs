//! Which task attempts may start now: pure scheduling logic, no I/O.
//!
//! Contract: [`Scheduler::next`] returns the attempts to launch given what is running. Rules,
//! checked in order of priority (higher first), then plan order:
//! - at most `jobs` attempts run at once;
//! - a task starts only after every task it depends on has landed (landed or empty);
//! - at most one `core` task runs at a time (its own best-of-K attempts may run together);
//! - two tasks whose claims may overlap never run at the same time. Overlap is decided
//!   conservatively ([`claims_overlap`]): two literal paths overlap when equal or when one is a
//!   folder of the other; as soon as a glob is involved, they overlap when one's literal prefix
//!   (the text before the first glob character) is a prefix of the other's;
//! - a ready task deferred by a claim or by the core rule reserves its claims, so tasks of
//!   lower priority that overlap it wait behind it instead of starving it. Deferred tasks stay
//!   in the queue and are reconsidered whenever something finishes: they are never dropped;
//! - a task whose dependency ended without landing is skipped (it can never start).
//!
//! [`Scheduler::explain`] says why each waiting task waits; [`Scheduler::simulate`] is the
//! `--dry-run` order (waves, assuming every started task lands).

use std::collections::VecDeque;

use serde::Serialize;

use crate::plan::has_glob_meta;

/// One task as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct SchedTask {
    pub id: String,
    pub priority: i64,
    /// Plan order.
    pub index: usize,
    pub core: bool,
    pub claims: Vec<String>,
    /// Indices of the tasks it depends on.
    pub deps: Vec<usize>,
    /// Attempt numbers still to run, in order.
    pub attempts: Vec<u32>,
}

/// Where a task is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum TaskStatus {
    /// Not started, or attempts remain to start.
    Waiting,
    /// At least one attempt is running.
    Running,
    /// Landed (or empty): dependents may start.
    Landed,
    /// Every attempt ended without landing.
    Failed(String),
    /// Can never start: a dependency did not land.
    Skipped(String),
}

impl TaskStatus {
    fn is_terminal(&self) -> bool {
        matches!(self, TaskStatus::Landed | TaskStatus::Failed(_) | TaskStatus::Skipped(_))
    }
}

/// One attempt to launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Unit {
    pub task: usize,
    pub attempt: u32,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitEnd {
    Landed,
    NotLanded(String),
}

/// Why a task is not starting now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Wait {
    /// These dependencies have not landed yet.
    Dependency { on: Vec<String> },
    /// Another core task is running (or waits ahead with higher priority).
    Core { behind: String },
    /// Its claims may overlap those of a running task, or of a task ahead of it in priority.
    Claim { behind: String, mine: String, theirs: String, running: bool },
    /// All `jobs` slots are taken.
    Slots { jobs: usize },
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::Dependency { on } => write!(f, "waits for {} to land (depends_on)", on.join(", ")),
            Wait::Core { behind } => write!(f, "waits for core task {behind} (core tasks run one at a time)"),
            Wait::Claim { behind, mine, theirs, running: true } => {
                write!(f, "waits for {behind}: claims may overlap ({mine} ~ {theirs})")
            }
            Wait::Claim { behind, mine, theirs, running: false } => {
                write!(f, "queued behind higher-priority {behind}: claims may overlap ({mine} ~ {theirs})")
            }
            Wait::Slots { jobs } => write!(f, "waits for a free slot (-j {jobs})"),
        }
    }
}

/// One row of the dry-run order.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunRow {
    pub id: String,
    /// 1-based wave the task starts in (all tasks of a wave run together); `None` if it never starts.
    pub wave: Option<usize>,
    /// Why it does not start right away (`None` for wave 1 or a task already landed).
    pub waits: Option<String>,
    /// The task had landed before this dispatch.
    pub already_landed: bool,
}

/// The scheduler's state for one dispatch.
#[derive(Debug, Clone)]
pub struct Scheduler {
    tasks: Vec<SchedTask>,
    status: Vec<TaskStatus>,
    pending: Vec<VecDeque<u32>>,
    running: Vec<u32>,
    jobs: usize,
}

impl Scheduler {
    /// A scheduler for these tasks running at most `jobs` attempts at once.
    pub fn new(tasks: Vec<SchedTask>, jobs: usize) -> Scheduler {
        let n = tasks.len();
        let pending = tasks.iter().map(|t| t.attempts.iter().copied().collect()).collect();
        Scheduler { tasks, status: vec![TaskStatus::Waiting; n], pending, running: vec![0; n], jobs: jobs.max(1) }
    }

    /// Adds a task to a running schedule (a plan that grew while it ran); returns its index. Its
    /// `deps` are indices in the grown schedule: a batch of added tasks may refer to each other,
    /// so start the next attempts only once the whole batch is in.
    pub fn add(&mut self, task: SchedTask) -> usize {
        self.pending.push(task.attempts.iter().copied().collect());
        self.tasks.push(task);
        self.status.push(TaskStatus::Waiting);
        self.running.push(0);
        self.tasks.len() - 1
    }

    /// Marks a task as already landed (from the ledger): it will not run, dependents may start.
    pub fn set_landed(&mut self, task: usize) {
        self.status[task] = TaskStatus::Landed;
        self.pending[task].clear();
    }

    /// Marks a task as skipped before it starts (e.g. abandoned by the user).
    pub fn set_skipped(&mut self, task: usize, reason: impl Into<String>) {
        self.status[task] = TaskStatus::Skipped(reason.into());
        self.pending[task].clear();
    }

    pub fn tasks(&self) -> &[SchedTask] {
        &self.tasks
    }

    pub fn status(&self, task: usize) -> &TaskStatus {
        &self.status[task]
    }

    /// Attempts running now.
    pub fn running_units(&self) -> usize {
        self.running.iter().map(|&r| r as usize).sum()
    }

    /// Nothing is running and nothing can start: the dispatch is over.
    pub fn is_done(&self) -> bool {
        self.running_units() == 0 && self.round().0.is_empty()
    }

    /// The attempts to launch now; they count as running until [`Scheduler::finish`].
    pub fn start_next(&mut self) -> Vec<Unit> {
        self.propagate_skips();
        let (units, _) = self.round();
        for u in &units {
            let popped = self.pending[u.task].pop_front();
            debug_assert_eq!(popped, Some(u.attempt));
            self.running[u.task] += 1;
            self.status[u.task] = TaskStatus::Running;
        }
        units
    }

    /// Records how an attempt ended.
    pub fn finish(&mut self, unit: Unit, end: UnitEnd) {
        let t = unit.task;
        self.running[t] = self.running[t].saturating_sub(1);
        match end {
            UnitEnd::Landed => {
                self.status[t] = TaskStatus::Landed;
                self.pending[t].clear();
            }
            UnitEnd::NotLanded(reason) => {
                if self.status[t] == TaskStatus::Landed {
                    return;
                }
                if self.running[t] == 0 {
                    self.status[t] =
                        if self.pending[t].is_empty() { TaskStatus::Failed(reason) } else { TaskStatus::Waiting };
                }
            }
        }
        self.propagate_skips();
    }

    /// Why each waiting task waits right now (tasks that would start now are not listed).
    pub fn explain(&self) -> Vec<(usize, Wait)> {
        self.round().1
    }

    /// The `--dry-run` order: waves of tasks that would start together if every task landed.
    pub fn simulate(&self) -> Vec<DryRunRow> {
        let mut sim = self.clone();
        let mut rows: Vec<DryRunRow> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| DryRunRow {
                id: t.id.clone(),
                wave: None,
                waits: None,
                already_landed: self.status[i] == TaskStatus::Landed,
            })
            .collect();
        sim.propagate_skips();
        for (i, w) in sim.explain() {
            rows[i].waits = Some(w.to_string());
        }
        let mut wave = 0;
        loop {
            let units = sim.start_next();
            if units.is_empty() {
                break;
            }
            wave += 1;
            for u in &units {
                rows[u.task].wave.get_or_insert(wave);
            }
            for u in units {
                sim.finish(u, UnitEnd::Landed);
            }
        }
        for (i, row) in rows.iter_mut().enumerate() {
            if let TaskStatus::Skipped(r) = &sim.status[i] {
                row.waits = Some(format!("skipped: {r}"));
            }
        }
        rows
    }

    /// Tasks in the order they are considered: priority (high first), then plan order.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.tasks.len()).collect();
        order.sort_by(|&a, &b| {
            let (ta, tb) = (&self.tasks[a], &self.tasks[b]);
            tb.priority.cmp(&ta.priority).then(ta.index.cmp(&tb.index))
        });
        order
    }

    /// Skips waiting tasks whose dependencies can no longer land.
    fn propagate_skips(&mut self) {
        loop {
            let mut changed = false;
            for i in 0..self.tasks.len() {
                if self.status[i] != TaskStatus::Waiting || self.running[i] > 0 {
                    continue;
                }
                let dead = self.tasks[i]
                    .deps
                    .iter()
                    .copied()
                    .find(|&d| matches!(self.status[d], TaskStatus::Failed(_) | TaskStatus::Skipped(_)));
                if let Some(d) = dead {
                    self.status[i] = TaskStatus::Skipped(format!("dependency {} did not land", self.tasks[d].id));
                    self.pending[i].clear();
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// One scheduling round without changing anything: what starts, and why the rest waits.
    fn round(&self) -> (Vec<Unit>, Vec<(usize, Wait)>) {
        let mut running = self.running.clone();
        let mut free = self.jobs.saturating_sub(self.running_units());
        let mut units = Vec::new();
        let mut waits = Vec::new();
        // Tasks deferred ahead of others: their claims (and core-ness) are reserved.
        let mut reserved: Vec<usize> = Vec::new();
        for i in self.order() {
            let t = &self.tasks[i];
            if self.status[i].is_terminal() || self.pending[i].is_empty() {
                continue;
            }
            let not_landed: Vec<String> = t
                .deps
                .iter()
                .filter(|&&d| self.status[d] != TaskStatus::Landed)
                .map(|&d| self.tasks[d].id.clone())
                .collect();
            if !not_landed.is_empty() {
                waits.push((i, Wait::Dependency { on: not_landed }));
                continue;
            }
            if t.core {
                let other_core = (0..self.tasks.len()).find(|&o| o != i && self.tasks[o].core && running[o] > 0);
                if let Some(o) = other_core {
                    waits.push((i, Wait::Core { behind: self.tasks[o].id.clone() }));
                    reserved.push(i);
                    continue;
                }
                if let Some(&o) = reserved.iter().find(|&&o| self.tasks[o].core) {
                    waits.push((i, Wait::Core { behind: self.tasks[o].id.clone() }));
                    reserved.push(i);
                    continue;
                }
            }
            let clash = (0..self.tasks.len())
                .filter(|&o| o != i && running[o] > 0)
                .find_map(|o| sets_overlap(&t.claims, &self.tasks[o].claims).map(|(m, th)| (o, m, th, true)))
                .or_else(|| {
                    reserved
                        .iter()
                        .find_map(|&o| sets_overlap(&t.claims, &self.tasks[o].claims).map(|(m, th)| (o, m, th, false)))
                });
            if let Some((o, mine, theirs, is_running)) = clash {
                waits.push((i, Wait::Claim { behind: self.tasks[o].id.clone(), mine, theirs, running: is_running }));
                reserved.push(i);
                continue;
            }
            if free == 0 {
                waits.push((i, Wait::Slots { jobs: self.jobs }));
                continue;
            }
            for &attempt in self.pending[i].iter() {
                if free == 0 {
                    break;
                }
                units.push(Unit { task: i, attempt });
                running[i] += 1;
                free -= 1;
            }
        }
        (units, waits)
    }
}

/// The literal text of a glob before its first glob character.
pub fn literal_prefix(glob: &str) -> &str {
    match glob.find(['*', '?', '[', ']', '{', '}', '\\']) {
        Some(i) => &glob[..i],
        None => glob,
    }
}

/// Whether two claim globs may match a common path (conservative: may say yes when they don't).
pub fn claims_overlap(a: &str, b: &str) -> bool {
    let (ga, gb) = (has_glob_meta(a), has_glob_meta(b));
    if !ga && !gb {
        // Two plain paths: the same file, or one is a folder holding the other.
        return a == b || is_dir_prefix(a, b) || is_dir_prefix(b, a);
    }
    let (pa, pb) = (literal_prefix(a), literal_prefix(b));
    pa.starts_with(pb) || pb.starts_with(pa)
}

fn is_dir_prefix(dir: &str, path: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// The first overlapping pair of two claim sets, if any.
pub fn sets_overlap(a: &[String], b: &[String]) -> Option<(String, String)> {
    a.iter().find_map(|x| b.iter().find(|y| claims_overlap(x, y)).map(|y| (x.clone(), y.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, index: usize) -> SchedTask {
        SchedTask { id: id.into(), priority: 0, index, core: false, claims: vec![], deps: vec![], attempts: vec![1] }
    }

    fn ids(s: &Scheduler, units: &[Unit]) -> Vec<String> {
        units.iter().map(|u| s.tasks[u.task].id.clone()).collect()
    }

    #[test]
    fn overlap_rules() {
        assert!(claims_overlap("src/a/**", "src/**/x.rs"));
        assert!(!claims_overlap("src/a/**", "src/b/**"));
        assert!(!claims_overlap("src/plugins/auth/**", "src/plugins/authz/**"));
        assert!(claims_overlap("src/main.rs", "src/main.rs"));
        assert!(!claims_overlap("src/main.rs", "src/lib.rs"));
        assert!(claims_overlap("src", "src/main.rs"));
        assert!(!claims_overlap("src/a", "src/ab"));
        assert!(claims_overlap("src/main.rs", "src/*.rs"));
        assert!(claims_overlap("*.md", "docs/x.md"));
        assert!(claims_overlap("**", "anything"));
        assert!(!claims_overlap("docs/**", "src/main.rs"));
        assert!(claims_overlap("src/{a,b}/**", "src/c/x"));
    }

    #[test]
    fn jobs_limit() {
        let tasks = (0..5).map(|i| task(&format!("t{i}"), i)).collect();
        let mut s = Scheduler::new(tasks, 2);
        let first = s.start_next();
        assert_eq!(ids(&s, &first), vec!["t0", "t1"]);
        assert!(s.start_next().is_empty());
        assert_eq!(s.explain()[0].1, Wait::Slots { jobs: 2 });
        s.finish(first[0], UnitEnd::Landed);
        assert_eq!(ids(&s, &s.clone().start_next()), vec!["t2"]);
    }

    #[test]
    fn core_single_flight_and_plugins_free() {
        let mut a = task("core-a", 0);
        a.core = true;
        a.claims = vec!["src/core/a.rs".into()];
        let mut b = task("core-b", 1);
        b.core = true;
        b.claims = vec!["src/core/b.rs".into()];
        let mut p = task("plug", 2);
        p.claims = vec!["src/plugins/p/**".into()];
        let mut s = Scheduler::new(vec![a, b, p], 8);
        let first = s.start_next();
        assert_eq!(ids(&s, &first), vec!["core-a", "plug"]);
        assert_eq!(s.explain(), vec![(1, Wait::Core { behind: "core-a".into() })]);
        s.finish(first[0], UnitEnd::NotLanded("verify failed".into()));
        assert_eq!(ids(&s, &s.clone().start_next()), vec!["core-b"]);
    }

    #[test]
    fn dependencies_wait_for_landing_and_failures_skip() {
        let a = task("a", 0);
        let mut b = task("b", 1);
        b.deps = vec![0];
        let mut c = task("c", 2);
        c.deps = vec![1];
        let mut s = Scheduler::new(vec![a, b, c], 4);
        let first = s.start_next();
        assert_eq!(ids(&s, &first), vec!["a"]);
        assert_eq!(s.explain()[0].1, Wait::Dependency { on: vec!["a".into()] });
        s.finish(first[0], UnitEnd::Landed);
        let second = s.start_next();
        assert_eq!(ids(&s, &second), vec!["b"]);
        s.finish(second[0], UnitEnd::NotLanded("conflict".into()));
        assert!(s.start_next().is_empty());
        assert_eq!(s.status(2), &TaskStatus::Skipped("dependency b did not land".into()));
        assert!(s.is_done());
    }

    #[test]
    fn claims_defer_and_are_retried() {
        let mut a = task("a", 0);
        a.claims = vec!["src/**".into()];
        let mut b = task("b", 1);
        b.claims = vec!["src/x/**".into()];
        let c = task("c", 2);
        let mut s = Scheduler::new(vec![a, b, c], 4);
        let first = s.start_next();
        assert_eq!(ids(&s, &first), vec!["a", "c"]);
        match &s.explain()[0].1 {
            Wait::Claim { behind, running: true, .. } => assert_eq!(behind, "a"),
            w => panic!("{w:?}"),
        }
        s.finish(first[0], UnitEnd::NotLanded("failed".into()));
        assert_eq!(ids(&s, &s.clone().start_next()), vec!["b"]);
    }

    #[test]
    fn priority_first_and_reservation() {
        // hi waits on a running claim; lo (lower priority, overlapping hi) must not jump ahead.
        let mut run = task("run", 0);
        run.claims = vec!["a/**".into()];
        run.priority = 10;
        let mut hi = task("hi", 1);
        hi.claims = vec!["a/x/**".into(), "b/**".into()];
        hi.priority = 5;
        let mut lo = task("lo", 2);
        lo.claims = vec!["b/**".into()];
        let mut free = task("free", 3);
        free.priority = 1;
        let mut s = Scheduler::new(vec![run, hi, lo, free], 1);
        let first = s.start_next();
        assert_eq!(ids(&s, &first), vec!["run"]);
        s.jobs = 4;
        let second = s.start_next();
        assert_eq!(ids(&s, &second), vec!["free"]);
        let w = s.explain();
        assert!(matches!(&w[1].1, Wait::Claim { behind, running: false, .. } if behind == "hi"), "{w:?}");
        s.finish(first[0], UnitEnd::Landed);
        assert_eq!(ids(&s, &s.clone().start_next()), vec!["hi"]);
    }

    #[test]
    fn priority_orders_starts() {
        let a = task("a", 0);
        let mut b = task("b", 1);
        b.priority = 3;
        let mut s = Scheduler::new(vec![a, b], 1);
        assert_eq!(ids(&s, &s.clone().start_next()), vec!["b"]);
        let u = s.start_next();
        s.finish(u[0], UnitEnd::Landed);
        let u = s.start_next();
        assert_eq!(ids(&s, &u), vec!["a"]);
    }

    #[test]
    fn best_of_k_attempts() {
        let mut a = task("a", 0);
        a.attempts = vec![1, 2, 3];
        a.core = true;
        let mut s = Scheduler::new(vec![a], 2);
        let first = s.start_next();
        assert_eq!(first, vec![Unit { task: 0, attempt: 1 }, Unit { task: 0, attempt: 2 }]);
        s.finish(first[0], UnitEnd::NotLanded("verify".into()));
        assert_eq!(s.status(0), &TaskStatus::Running);
        let second = s.start_next();
        assert_eq!(second, vec![Unit { task: 0, attempt: 3 }]);
        s.finish(first[1], UnitEnd::Landed);
        s.finish(second[0], UnitEnd::NotLanded("candidate".into()));
        assert_eq!(s.status(0), &TaskStatus::Landed);
        assert!(s.is_done());
    }

    #[test]
    fn already_landed_and_dry_run() {
        let a = task("a", 0);
        let mut b = task("b", 1);
        b.deps = vec![0];
        let mut c = task("c", 2);
        c.deps = vec![1];
        let mut d = task("d", 3);
        d.core = true;
        let mut e = task("e", 4);
        e.core = true;
        let mut s = Scheduler::new(vec![a, b, c, d, e], 4);
        s.set_landed(0);
        let rows = s.simulate();
        let waves: Vec<Option<usize>> = rows.iter().map(|r| r.wave).collect();
        assert_eq!(waves, vec![None, Some(1), Some(2), Some(1), Some(2)]);
        assert!(rows[0].already_landed);
        assert!(rows[2].waits.as_deref().unwrap().contains("waits for b to land"));
        assert!(rows[4].waits.as_deref().unwrap().contains("core task d"));
    }

    #[test]
    fn tasks_added_while_it_runs_follow_the_same_rules() {
        let mut a = task("a", 0);
        a.claims = vec!["src/a/**".into()];
        let mut s = Scheduler::new(vec![a], 4);
        let first = s.start_next();
        assert_eq!(ids(&s, &first), vec!["a"]);
        // Added while `a` runs: one free, one depending on `a`, one whose claims overlap `a`'s.
        let free = s.add(task("free", 1));
        let mut after = task("after", 2);
        after.deps = vec![0];
        s.add(after);
        let mut clash = task("clash", 3);
        clash.claims = vec!["src/a/x.rs".into()];
        s.add(clash);
        assert_eq!(free, 1);
        let next = s.start_next();
        assert_eq!(ids(&s, &next), vec!["free"], "{:?}", s.explain());
        s.finish(first[0], UnitEnd::Landed);
        let next = s.start_next();
        assert_eq!(ids(&s, &next), vec!["after", "clash"]);
        // A task added after its dependency failed is skipped, as in a plan given at once.
        let mut b = task("b", 4);
        b.claims = vec!["src/b/**".into()];
        let bi = s.add(b);
        let started = s.start_next();
        assert_eq!(ids(&s, &started), vec!["b"]);
        s.finish(started[0], UnitEnd::NotLanded("verify failed".into()));
        let mut late = task("late", 5);
        late.deps = vec![bi];
        let li = s.add(late);
        assert!(s.start_next().is_empty());
        assert!(matches!(s.status(li), TaskStatus::Skipped(_)), "{:?}", s.status(li));
    }
}
