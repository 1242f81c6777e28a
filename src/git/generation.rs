//! Commit walks bounded by generation numbers: merge bases and ancestry in time that does not
//! grow with the length of history, whatever the commits' dates say.
//!
//! Contract: [`merge_bases`] returns exactly what libgit2's `merge_bases` returns (the best common
//! ancestors), and [`descends_from`] exactly what `graph_descendant_of` returns; only the walk
//! differs. libgit2 orders its walk by generation number only when *both* commits compared have
//! one, i.e. are in the commit-graph file; the commits git-hybrid cares about (task commits,
//! recent landings) never are, so libgit2 falls back to commit dates and, with skewed dates
//! (a task dated before the target's tip), walks deep into history. Here every commit gets its
//! generation (topological level, as git's commit-graph stores it): from the commit-graph
//! (`objects/info/commit-graph` or its split chain, read with `gix-commitgraph`) or, for a
//! commit outside it, one more than its parents' highest (a commit's id fixes its history, so
//! the number never changes). A commit outside the graph is read once per repository, not once
//! per process: what a walk computed (generation, date, parents) is added to the cache of
//! [`super::commit_facts`], which later processes consult before reading a commit, so what a
//! lone process reads does not grow with the number of commits made since the commit-graph was
//! last written. Within a process the facts are remembered too. The walk pops the highest
//! generation first, which is exact: a commit comes after all of its descendants.
//!
//! Where that cannot be done cheaply the answer comes from libgit2 as before: no commit-graph,
//! a graph without generation numbers, a shallow repository, more than [`OUTSIDE_BUDGET`]
//! commits outside the graph and its cache to read, or more than one best common ancestor (criss-cross merges, where
//! libgit2's order of the bases is kept).
//!
//! Trust: the commit-graph lives in the object store, which agents can write like the objects
//! themselves; git and libgit2 read it just the same (libgit2 already used it for every walk).
//! The facts cache lives in the git directory too and is trusted the same way (see its contract).

use std::cell::RefCell;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::{Context, Result};
use git2::{Oid, Repository};

use super::commit_facts::{Fact, Facts};

/// Commits outside the commit-graph (and not in the facts cache) that one question may read
/// before giving the walk to libgit2 (a repository whose graph is missing most of its history).
pub const OUTSIDE_BUDGET: usize = 10_000;

/// The facts a walk needs about one commit.
#[derive(Clone)]
struct Node {
    generation: u32,
    time: i64,
    parents: Rc<[Oid]>,
}

/// Why the generation walk gave the question back to libgit2.
struct Fallback;

thread_local! {
    /// Generation facts of commits (any repository: an id fixes a commit's history).
    static NODES: RefCell<HashMap<Oid, Node>> = RefCell::new(HashMap::new());
    /// Merge bases answered, by pair.
    static BASES: RefCell<HashMap<(Oid, Oid), Vec<Oid>>> = RefCell::new(HashMap::new());
    /// The commit-graph of each object store, opened once per thread (None: not usable).
    static GRAPHS: RefCell<HashMap<PathBuf, Option<Rc<gix_commitgraph::Graph>>>> = RefCell::new(HashMap::new());
    /// The facts cache of each common git directory, read once per thread.
    static FACTS: RefCell<HashMap<PathBuf, Rc<Facts>>> = RefCell::new(HashMap::new());
}

/// Remembered nodes (and merge-base answers) at most; a memo starts over beyond it.
const NODES_MAX: usize = 200_000;

/// The merge bases of `a` and `b` (none when they share no history), as libgit2 computes them.
/// Commits never change, so the answer for a pair holds forever: it is remembered for the
/// process (a landing asks for the same pair in its catch-up check, merge and commit list, and
/// adopting a branch before landing it asks too).
pub fn merge_bases(repo: &Repository, a: Oid, b: Oid) -> Result<Vec<Oid>> {
    if a == b {
        return Ok(vec![a]);
    }
    if let Some(hit) = BASES.with(|m| m.borrow().get(&(a, b)).cloned()) {
        return Ok(hit);
    }
    let bases = match Walker::open(repo).map(|w| w.paint_down(a, b)) {
        Some(Ok(bases)) if bases.len() <= 1 => bases,
        _ => match repo.merge_bases(a, b) {
            Ok(bases) => bases.iter().copied().collect(),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Vec::new(),
            Err(e) => return Err(e).context("cannot find the merge base"),
        },
    };
    BASES.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= NODES_MAX {
            m.clear();
        }
        m.insert((a, b), bases.clone());
    });
    Ok(bases)
}

/// The first of [`merge_bases`] (as libgit2's `merge_base`), None when there is none.
pub fn merge_base(repo: &Repository, a: Oid, b: Oid) -> Result<Option<Oid>> {
    Ok(merge_bases(repo, a, b)?.first().copied())
}

/// True when `tip` descends from `ancestor` (a proper descendant: false when they are equal),
/// as libgit2's `graph_descendant_of`.
pub fn descends_from(repo: &Repository, tip: Oid, ancestor: Oid) -> Result<bool> {
    if tip == ancestor {
        return Ok(false);
    }
    if let Some(walker) = Walker::open(repo) {
        if let Ok(answer) = walker.reaches(tip, ancestor) {
            return Ok(answer);
        }
    }
    Ok(repo.graph_descendant_of(tip, ancestor)?)
}

/// The commits reachable from `tip` and from none of `hide`, parents before children (as a
/// libgit2 revwalk sorted `TOPOLOGICAL | REVERSE` lists them), or None when the generation walk
/// cannot answer (the caller then asks libgit2's revwalk). Without generation numbers, a
/// revwalk that hides a commit dated after `tip`'s walks history down to `tip`'s date.
pub fn only_in(repo: &Repository, tip: Oid, hide: &[Oid]) -> Option<Vec<Oid>> {
    Walker::open(repo)?.only_in(tip, hide).ok()
}

struct Walker<'r> {
    repo: &'r Repository,
    graph: Rc<gix_commitgraph::Graph>,
    facts: Rc<Facts>,
}

const PARENT1: u8 = 1;
const PARENT2: u8 = 2;
const STALE: u8 = 4;
const RESULT: u8 = 8;

/// A queue entry: highest generation first, then the newest, then by id (any fixed order).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Queued(u32, i64, Oid);

impl<'r> Walker<'r> {
    /// The walker for `repo`, or None when its commit-graph cannot bound the walk.
    fn open(repo: &'r Repository) -> Option<Self> {
        if repo.is_shallow() {
            return None;
        }
        let common = repo.commondir();
        let objects = common.join("objects");
        let graph = GRAPHS.with(|g| {
            g.borrow_mut()
                .entry(objects.clone())
                .or_insert_with(|| {
                    let graph =
                        gix_commitgraph::Graph::from_info_dir(&objects.join("info"), gix_hash::Kind::Sha1).ok()?;
                    graph.generation_numbers_available().then(|| Rc::new(graph))
                })
                .clone()
        })?;
        let facts = FACTS.with(|f| {
            f.borrow_mut().entry(common.to_path_buf()).or_insert_with(|| Rc::new(Facts::open(common))).clone()
        });
        Some(Walker { repo, graph, facts })
    }

    /// The facts about `id`, from the memo, the commit-graph, the facts cache or the commit
    /// itself (its generation computed from its parents', reading at most `budget` more
    /// commits; what was read is added to the cache).
    fn node(&self, id: Oid, budget: &mut usize) -> std::result::Result<Node, Fallback> {
        if let Some(n) = NODES.with(|m| m.borrow().get(&id).cloned()) {
            return Ok(n);
        }
        if let Some(n) = self.in_graph(id).or_else(|| self.cached(id)) {
            return Ok(n);
        }
        // Outside the graph: depth-first until every parent's generation is known.
        // (commit, its date and parents once read)
        type Pending = (Oid, Option<(i64, Rc<[Oid]>)>);
        let mut stack: Vec<Pending> = vec![(id, None)];
        let mut computed: HashMap<Oid, Node> = HashMap::new();
        while let Some((top, read)) = stack.pop() {
            if computed.contains_key(&top) {
                continue;
            }
            let (time, parents) = match read {
                Some(r) => r,
                None => {
                    *budget = budget.checked_sub(1).ok_or(Fallback)?;
                    crate::failpoint!("generation::commit_read");
                    let c = self.repo.find_commit(top).map_err(|_| Fallback)?;
                    (c.time().seconds(), c.parent_ids().collect::<Rc<[Oid]>>())
                }
            };
            let mut generation = 0u32;
            let mut missing = Vec::new();
            for p in parents.iter() {
                let known = computed
                    .get(p)
                    .cloned()
                    .or_else(|| NODES.with(|m| m.borrow().get(p).cloned()))
                    .or_else(|| self.in_graph(*p))
                    .or_else(|| self.cached(*p));
                match known {
                    Some(n) => generation = generation.max(n.generation),
                    None => missing.push(*p),
                }
            }
            if missing.is_empty() {
                let generation = generation.saturating_add(1).min(gix_commitgraph::GENERATION_NUMBER_MAX);
                computed.insert(top, Node { generation, time, parents });
            } else {
                stack.push((top, Some((time, parents))));
                stack.extend(missing.into_iter().map(|p| (p, None)));
            }
        }
        NODES.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() + computed.len() > NODES_MAX {
                m.clear();
            }
            m.extend(computed.iter().map(|(k, v)| (*k, v.clone())));
        });
        let facts: Vec<Fact> = computed
            .iter()
            .map(|(id, n)| Fact { id: *id, generation: n.generation, time: n.time, parents: n.parents.to_vec() })
            .collect();
        self.facts.append(&facts, &|id| self.graph_has(id));
        computed.remove(&id).ok_or(Fallback)
    }

    /// The facts about `id` when the facts cache holds them.
    fn cached(&self, id: Oid) -> Option<Node> {
        let f = self.facts.get(id)?;
        Some(Node { generation: f.generation, time: f.time, parents: f.parents.into() })
    }

    /// `id`'s entry in the commit-graph, when it holds it.
    fn graph_entry(&self, id: Oid) -> Option<gix_commitgraph::file::Commit<'_>> {
        self.graph.commit_by_id(gix_hash::oid::try_from_bytes(id.as_bytes()).ok()?)
    }

    /// True when the commit-graph holds `id`.
    fn graph_has(&self, id: Oid) -> bool {
        self.graph_entry(id).is_some()
    }

    /// The facts about `id` when the commit-graph holds it.
    fn in_graph(&self, id: Oid) -> Option<Node> {
        let commit = self.graph_entry(id)?;
        let generation = commit.generation();
        let time = i64::try_from(commit.committer_timestamp()).ok()?;
        let mut parents = Vec::with_capacity(2);
        for p in commit.iter_parents() {
            let p = p.ok()?;
            parents.push(Oid::from_bytes(self.graph.id_at(p).as_bytes()).ok()?);
        }
        Some(Node { generation, time, parents: parents.into() })
    }

    /// git's "paint down to common": the best common ancestors of `one` and `two`.
    fn paint_down(&self, one: Oid, two: Oid) -> std::result::Result<Vec<Oid>, Fallback> {
        let mut budget = OUTSIDE_BUDGET;
        let mut flags: HashMap<Oid, u8> = HashMap::new();
        let mut queue = BinaryHeap::new();
        for (id, flag) in [(one, PARENT1), (two, PARENT2)] {
            let n = self.node(id, &mut budget)?;
            flags.insert(id, flag);
            queue.push(Queued(n.generation, n.time, id));
        }
        let mut result = Vec::new();
        while queue.iter().any(|q| flags.get(&q.2).is_some_and(|f| f & STALE == 0)) {
            let Some(Queued(_, _, id)) = queue.pop() else { break };
            let node = self.node(id, &mut budget)?;
            let own = flags.get(&id).copied().unwrap_or(0);
            let mut paint = own & (PARENT1 | PARENT2 | STALE);
            if paint == PARENT1 | PARENT2 {
                if own & RESULT == 0 {
                    flags.insert(id, own | RESULT);
                    result.push(id);
                }
                paint |= STALE;
            }
            self.paint_parents(&node, paint, &mut flags, &mut queue, &mut budget)?;
        }
        Ok(result.into_iter().filter(|id| flags.get(id).is_some_and(|f| f & STALE == 0)).collect())
    }

    /// Adds `paint` to each parent of `node` that lacks some of it, and queues that parent.
    fn paint_parents(
        &self,
        node: &Node,
        paint: u8,
        flags: &mut HashMap<Oid, u8>,
        queue: &mut BinaryHeap<Queued>,
        budget: &mut usize,
    ) -> std::result::Result<(), Fallback> {
        for p in node.parents.iter() {
            let pf = flags.get(p).copied().unwrap_or(0);
            if pf & paint == paint {
                continue;
            }
            let pn = self.node(*p, budget)?;
            flags.insert(*p, pf | paint);
            queue.push(Queued(pn.generation, pn.time, *p));
        }
        Ok(())
    }

    /// [`only_in`]: paint `tip`'s side and the hidden side down in generation order; a commit
    /// popped with only `tip`'s paint is reachable from no hidden commit (every path from one
    /// to it runs through commits of higher generation, all popped before it).
    fn only_in(&self, tip: Oid, hide: &[Oid]) -> std::result::Result<Vec<Oid>, Fallback> {
        let mut budget = OUTSIDE_BUDGET;
        let mut flags: HashMap<Oid, u8> = HashMap::new();
        let mut queue = BinaryHeap::new();
        for (id, flag) in hide.iter().map(|h| (*h, PARENT2)).chain([(tip, PARENT1)]) {
            if flags.get(&id).is_some_and(|f| f & flag != 0) {
                continue;
            }
            let n = self.node(id, &mut budget)?;
            *flags.entry(id).or_insert(0) |= flag;
            queue.push(Queued(n.generation, n.time, id));
        }
        let mut out = Vec::new();
        let mut done: std::collections::HashSet<Oid> = std::collections::HashSet::new();
        while queue.iter().any(|q| flags.get(&q.2).is_some_and(|f| f & PARENT2 == 0)) {
            let Some(Queued(_, _, id)) = queue.pop() else { break };
            if !done.insert(id) {
                continue;
            }
            let paint = flags.get(&id).copied().unwrap_or(0) & (PARENT1 | PARENT2);
            if paint == PARENT1 {
                out.push(id);
            }
            let node = self.node(id, &mut budget)?;
            self.paint_parents(&node, paint, &mut flags, &mut queue, &mut budget)?;
        }
        out.reverse();
        Ok(out)
    }

    /// True when `ancestor` is reachable from `tip` through parents (`tip` itself excluded).
    fn reaches(&self, tip: Oid, ancestor: Oid) -> std::result::Result<bool, Fallback> {
        let mut budget = OUTSIDE_BUDGET;
        let floor = self.node(ancestor, &mut budget)?.generation;
        let start = self.node(tip, &mut budget)?;
        let mut seen: std::collections::HashSet<Oid> = std::collections::HashSet::new();
        let mut queue = BinaryHeap::new();
        for p in start.parents.iter() {
            if seen.insert(*p) {
                let n = self.node(*p, &mut budget)?;
                queue.push(Queued(n.generation, n.time, *p));
            }
        }
        while let Some(Queued(generation, _, id)) = queue.pop() {
            if id == ancestor {
                return Ok(true);
            }
            if generation <= floor {
                // Everything left is at or below the ancestor's generation: none of it can
                // have the ancestor as a proper ancestor, and the ancestor itself was not met.
                continue;
            }
            for p in self.node(id, &mut budget)?.parents.iter() {
                if seen.insert(*p) {
                    let n = self.node(*p, &mut budget)?;
                    if n.generation >= floor {
                        queue.push(Queued(n.generation, n.time, *p));
                    }
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::git;

    /// A commit with an empty tree, the given parents and date (author and committer).
    fn commit_at(repo: &Repository, parents: &[Oid], when: i64, msg: &str) -> Oid {
        let tree = repo.find_tree(repo.treebuilder(None).unwrap().write().unwrap()).unwrap();
        let sig = git2::Signature::new("t", "t@e", &git2::Time::new(when, 0)).unwrap();
        let parents: Vec<git2::Commit> = parents.iter().map(|p| repo.find_commit(*p).unwrap()).collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(None, &sig, &sig, msg, &tree, &refs).unwrap()
    }

    #[test]
    fn agrees_with_libgit2_on_a_criss_cross_and_skewed_dates() {
        let dir = tempfile::tempdir().unwrap();
        let repo = &Repository::init(dir.path()).unwrap();
        let c = |parents: &[Oid], when: i64, name: &str| commit_at(repo, parents, when, name);
        let root = c(&[], 1_000, "root");
        let a1 = c(&[root], 2_000, "a1");
        let b1 = c(&[root], 500, "b1 (dated before its parent)");
        let a2 = c(&[a1, b1], 3_000, "a2");
        let b2 = c(&[b1, a1], 100, "b2");
        let a3 = c(&[a2], 4_000, "a3");
        let b3 = c(&[b2], 50, "b3");
        repo.reference("refs/heads/a", a3, true, "t").unwrap();
        repo.reference("refs/heads/b", b3, true, "t").unwrap();
        // The graph holds part of the history only: a4's generation is computed.
        git(dir.path(), &["commit-graph", "write", "--reachable"]);
        let a4 = c(&[a3], 10, "a4 outside the graph");
        let all = [root, a1, b1, a2, b2, a3, b3, a4];
        for &x in &all {
            for &y in &all {
                let mut ours = merge_bases(repo, x, y).unwrap();
                let mut theirs: Vec<Oid> = match repo.merge_bases(x, y) {
                    Ok(b) => b.iter().copied().collect(),
                    Err(_) => vec![],
                };
                ours.sort();
                theirs.sort();
                assert_eq!(ours, theirs, "merge bases of {x} and {y}");
                assert_eq!(
                    descends_from(repo, x, y).unwrap(),
                    repo.graph_descendant_of(x, y).unwrap(),
                    "{x} descends from {y}"
                );
            }
        }
        // The commits only on one side, in libgit2's TOPOLOGICAL | REVERSE order.
        for &x in &all {
            for hide in [vec![], vec![root], vec![b1], vec![a1, b2], vec![a3], vec![b3, a1]] {
                let mut walk = repo.revwalk().unwrap();
                walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE).unwrap();
                walk.push(x).unwrap();
                for h in &hide {
                    walk.hide(*h).unwrap();
                }
                let theirs: Vec<Oid> = walk.map(|o| o.unwrap()).collect();
                let ours = only_in(repo, x, &hide).expect("answered");
                let (mut a, mut b) = (ours.clone(), theirs.clone());
                a.sort();
                b.sort();
                assert_eq!(a, b, "commits of {x} hiding {hide:?}");
                let pos = |id: &Oid| ours.iter().position(|o| o == id).unwrap();
                for id in &ours {
                    for p in repo.find_commit(*id).unwrap().parent_ids() {
                        if ours.contains(&p) {
                            assert!(pos(&p) < pos(id), "parents first");
                        }
                    }
                }
            }
        }
        // The generation walk itself answered these (not libgit2).
        let w = Walker::open(repo).expect("a graph with generation numbers");
        assert_eq!(w.paint_down(a4, b3).ok().map(|v| v.len()), Some(2), "criss-cross: two bases");
        assert_eq!(w.paint_down(a4, a2).ok(), Some(vec![a2]));
        assert_eq!(w.paint_down(b3, a1).ok(), Some(vec![a1]));
        assert_eq!(w.reaches(a4, root).ok(), Some(true));
        assert_eq!(w.reaches(b3, a3).ok(), Some(false));
    }

    /// What a new process starts with: no memo, no graph or cache read yet.
    fn forget_the_process() {
        NODES.with(|m| m.borrow_mut().clear());
        BASES.with(|m| m.borrow_mut().clear());
        GRAPHS.with(|m| m.borrow_mut().clear());
        FACTS.with(|m| m.borrow_mut().clear());
    }

    /// The merge bases as libgit2 gives them, sorted.
    fn libgit2_bases(repo: &Repository, x: Oid, y: Oid) -> Vec<Oid> {
        let mut b: Vec<Oid> = repo.merge_bases(x, y).map(|b| b.iter().copied().collect()).unwrap_or_default();
        b.sort();
        b
    }

    #[test]
    fn commits_outside_the_graph_are_read_once_per_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repo = &Repository::init(dir.path()).unwrap();
        let c = |parents: &[Oid], when: i64, name: &str| commit_at(repo, parents, when, name);
        let root = c(&[], 1_000, "root");
        let a1 = c(&[root], 2_000, "a1");
        let b1 = c(&[root], 3_000, "b1");
        repo.reference("refs/heads/a", a1, true, "t").unwrap();
        repo.reference("refs/heads/b", b1, true, "t").unwrap();
        git(dir.path(), &["commit-graph", "write", "--reachable"]);
        // Outside the graph, with dates that go backwards (a walk by date would be misled).
        let a2 = c(&[a1], 500, "a2");
        let b2 = c(&[b1, a1], 400, "b2 merges a1");
        let a3 = c(&[a2, b1], 300, "a3 merges b1");
        let b3 = c(&[b2], 200, "b3");
        let a4 = c(&[a3], 100, "a4");
        let outside = [a2, b2, a3, b3, a4];
        let all = [root, a1, b1, a2, b2, a3, b3, a4];
        let mut expected = HashMap::new();
        for &x in &all {
            for &y in &all {
                expected.insert((x, y), libgit2_bases(repo, x, y));
                let mut ours = merge_bases(repo, x, y).unwrap();
                ours.sort();
                assert_eq!(ours, expected[&(x, y)], "merge bases of {x} and {y}");
            }
        }
        // The cache now holds every commit the walks read, and nothing the graph holds.
        forget_the_process();
        let facts = Facts::open(repo.commondir());
        for id in outside {
            let f = facts.get(id).unwrap_or_else(|| panic!("{id} cached"));
            assert_eq!(f.parents, repo.find_commit(id).unwrap().parent_ids().collect::<Vec<_>>());
        }
        assert_eq!(facts.get(a4).map(|f| f.generation), Some(5), "root 1, a1 2, a2 3, a3 4, a4 5");
        assert!(facts.get(a1).is_none() && facts.get(root).is_none());

        // A later process answers the same without the commits: their loose objects are gone.
        for id in outside {
            std::fs::remove_file(crate::git::loose::object_path(&dir.path().join(".git/objects"), id)).unwrap();
        }
        let repo = &Repository::open(dir.path()).unwrap();
        assert!(repo.find_commit(a4).is_err());
        let w = Walker::open(repo).expect("a graph with generation numbers");
        for &x in &all {
            for &y in &all {
                if x == y {
                    continue;
                }
                let mut ours = w.paint_down(x, y).ok().unwrap_or_else(|| panic!("walked {x} {y} from the cache"));
                ours.sort();
                assert_eq!(ours, expected[&(x, y)], "merge bases of {x} and {y} from the cache");
            }
        }
        assert_eq!(w.reaches(a4, b1).ok(), Some(true));
        assert_eq!(w.reaches(b3, a2).ok(), Some(false));
        assert_eq!(only_in(repo, a4, &[b3]), Some(vec![a2, a3, a4]));
    }
}
