#!/usr/bin/env python3
"""Compare two git-hybrid binaries (and the git CLI way) on the same prepared git/git clone.

On a shared machine two runs of one benchmark can differ 2x, so numbers taken minutes apart say
little about a change. This script measures both binaries in the same minutes: one clone of git/git
with task branches (`benches/realrepo.py`'s `prepare_seed`/`clone_way`: real, skewed task dates, a
commit-graph, `main` checked out), reset to the same state before every run, and the runs
interleaved (A, B, then B, A, ...: the first of each pair alternates so neither binary always
follows the reset), so load from other processes hits both alike.

Ways (each run starts from the same reset clone; per landing = the run's total / its landings):
  lone   LONE tasks, one `git-hybrid merge <task>` process each (main checked out)
  train  TRAIN tasks in one `git-hybrid merge t.. t..` process (a train)
  cli    the git CLI way for the LONE tasks: `git merge --squash` + `git commit` (no binary; run
         once per round, between the binaries' runs; --no-cli leaves it out)

Prints, per way, the median over --reps rounds of wall and CPU ms per landing (CPU = user + sys of
the processes run, from RUSAGE_CHILDREN) for A and B, the ratios B/A (below 1.0: B is faster) and
CLI/A, CLI/B, and the spread (min-max) so a noisy round shows. Checks that A and B end each way
with the same tree (the CLI way's squash commits differ in dates, its tree must match too).

Reset between runs (in the clone): `main` back to its first commit, `git read-tree -u --reset`,
`<git-dir>/hybrid/` removed, every `refs/hybrid/*` ref deleted and the task branches restored.
Objects the landings wrote stay (both binaries see the same growth).

Put the clone on tmpfs (`--dir /dev/shm`) to keep this VM's ext4 inode cost out of the
comparison (docs/benchmarks.md, "Real repository: git/git, session 5"); the clone copies the
source's packs there (about 500 MB for git/git).

Usage: benches/ab.py A_BINARY B_BINARY [--source DIR] [--dir PARENT] [--reps N] [--lone N]
                     [--train N] [--ways lone,train,cli] [--dates real|now]
Example: cp target/release/git-hybrid /tmp/before   (then change the code, cargo build --release)
         benches/ab.py /tmp/before target/release/git-hybrid --dir /dev/shm --reps 7
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import realrepo  # noqa: E402  (prepare_seed, clone_way, env_for, git, timed)


def fs_type(path):
    p = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
    return p.stdout.strip() or "?"


class Clone:
    """The one clone every run uses, with its reset."""

    def __init__(self, path, env):
        self.path, self.env = path, env
        g = lambda *a: realrepo.git(path, env, *a)  # noqa: E731
        self.start = g("rev-parse", "main").strip()
        self.tasks = g("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/hybrid/").splitlines()
        self.git_dir = os.path.join(path, g("rev-parse", "--git-dir").strip())

    def reset(self):
        g = lambda *a, **k: realrepo.git(self.path, self.env, *a, **k)  # noqa: E731
        g("update-ref", "refs/heads/main", self.start)
        g("read-tree", "-u", "--reset", "main")
        shutil.rmtree(os.path.join(self.git_dir, "hybrid"), ignore_errors=True)
        stale = g("for-each-ref", "--format=%(refname)", "refs/hybrid/").split()
        cmds = [f"delete {r}" for r in stale] + [f"update {t}" for t in self.tasks]
        g("update-ref", "--stdin", stdin=("\n".join(cmds) + "\n").encode())

    def tree(self):
        return realrepo.git(self.path, self.env, "rev-parse", "main^{tree}").strip()

    def dirty(self):
        return realrepo.git(self.path, self.env, "status", "--porcelain", "--untracked-files=no").strip()


def land_with(binary, clone, way, tasks):
    def run(*args):
        p = subprocess.run([binary, *args], cwd=clone.path, env=clone.env, capture_output=True)
        if p.returncode != 0:
            sys.exit(f"{binary} {' '.join(args)} failed ({p.returncode}): {p.stderr.decode()}")

    if way == "lone":
        return lambda: [run("merge", t) for t in tasks]
    if way == "train":
        return lambda: run("merge", *tasks)
    raise ValueError(way)


def land_cli(clone, tasks):
    def fn():
        for t in tasks:
            realrepo.git(clone.path, clone.env, "merge", "--squash", "-q", f"hybrid/{t}")
            realrepo.git(clone.path, clone.env, "commit", "-q", "-m", f"land {t}")

    return fn


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="binary A (e.g. the old one)")
    ap.add_argument("b", help="binary B (e.g. the new one)")
    ap.add_argument("--source", default=realrepo.DEFAULT_SOURCE, help="a git/git repository")
    ap.add_argument("--dir", help="parent folder of the clone (e.g. /dev/shm for tmpfs)")
    ap.add_argument("--reps", type=int, default=5, help="rounds (each: every way with A and B)")
    ap.add_argument("--lone", type=int, default=8, help="tasks per lone run (and CLI run)")
    ap.add_argument("--train", type=int, default=30, help="tasks per train run")
    ap.add_argument("--ways", default="lone,train,cli")
    ap.add_argument("--no-cli", action="store_true", help="leave the CLI way out")
    ap.add_argument("--dates", choices=["real", "now"], default="real")
    a = ap.parse_args()
    binaries = {"A": os.path.abspath(a.a), "B": os.path.abspath(a.b)}
    for name, b in binaries.items():
        if not os.access(b, os.X_OK):
            sys.exit(f"binary {name} is not an executable file: {b}")
    ways = [w for w in a.ways.split(",") if w and not (a.no_cli and w == "cli")]
    if unknown := [w for w in ways if w not in ("lone", "train", "cli")]:
        sys.exit(f"unknown ways: {unknown} (known: lone, train, cli)")
    if not os.path.isdir(a.source):
        sys.exit(f"no git/git repository at {a.source}: pass --source (a clone of https://github.com/git/git)")

    tmp = tempfile.mkdtemp(prefix="bench-ab-", dir=a.dir)
    env = realrepo.env_for(tmp)
    try:
        seed = os.path.join(tmp, "seed")
        n_tasks = max(a.lone if ("lone" in ways or "cli" in ways) else 0, a.train if "train" in ways else 0)
        print(f"preparing a clone of {a.source} with {n_tasks} task branches in {tmp} ({fs_type(tmp)}) ...", flush=True)
        n = realrepo.prepare_seed(a.source, seed, env, n_tasks, a.dates)
        work = os.path.join(tmp, "work")
        realrepo.clone_way(seed, work, env)
        shutil.rmtree(seed)
        clone = Clone(work, env)
        names = [f"t{t:03d}" for t in range(n)]
        tasks = {"lone": names[: a.lone], "train": names[: a.train], "cli": names[: a.lone]}

        # per (way, side): list of (wall ms, CPU ms) per landing, one per round
        res = {(w, s): [] for w in ways for s in ("A", "B", "CLI")}
        trees = {}
        load0 = os.getloadavg()[0]
        for rep in range(a.reps):
            order = ["A", "B"] if rep % 2 == 0 else ["B", "A"]
            for w in ways:
                sides = ["CLI"] if w == "cli" else order
                for side in sides:
                    clone.reset()
                    fn = land_cli(clone, tasks[w]) if side == "CLI" else land_with(binaries[side], clone, w, tasks[w])
                    wall, cpu = realrepo.timed(fn)
                    k = len(tasks[w])
                    res[(w, side)].append((1000 * wall / k, 1000 * cpu / k))
                    trees.setdefault(w if w != "cli" else "lone", set()).add(clone.tree())
                    if clone.dirty():
                        sys.exit(f"{side} left the checkout dirty after {w}: {clone.dirty()}")
            print(f"round {rep + 1}/{a.reps} done", flush=True)
        load1 = os.getloadavg()[0]

        print()
        print(f"A: {binaries['A']}")
        print(f"B: {binaries['B']}")
        commits = realrepo.git(work, env, "rev-list", "--count", clone.start).strip()
        print(f"repository: {a.source} ({commits} commits), clone on {fs_type(tmp)}, {a.reps} rounds, dates {a.dates}")
        print(f"load average (1 min) before/after: {load0:.2f} / {load1:.2f} on {os.cpu_count()} CPUs")
        print("medians per landing over the rounds (spread min-max in brackets)")

        def med(w, s, i):
            return statistics.median(v[i] for v in res[(w, s)])

        def spread(w, s, i):
            vs = [v[i] for v in res[(w, s)]]
            return f"[{min(vs):.1f}-{max(vs):.1f}]"

        head = f"{'way':<7}{'landings':>9}  {'side':<4}{'wall ms':>9} {'':<13}{'CPU ms':>8} {'':<13}"
        print(head)
        for w in ways:
            for s in ["CLI"] if w == "cli" else ["A", "B"]:
                print(
                    f"{w:<7}{len(tasks[w]):>9}  {s:<4}{med(w, s, 0):>9.1f} {spread(w, s, 0):<13}"
                    f"{med(w, s, 1):>8.1f} {spread(w, s, 1):<13}"
                )
        print()
        for w in ways:
            if w == "cli":
                continue
            print(
                f"{w:<7} B/A {med(w, 'B', 0) / med(w, 'A', 0):5.2f} wall  {med(w, 'B', 1) / med(w, 'A', 1):5.2f} CPU"
                "   (below 1.00: B is faster)"
            )
        if "cli" in ways and "lone" in ways:
            for s in ("A", "B"):
                print(
                    f"CLI/{s} lone  {med('cli', 'CLI', 0) / med('lone', s, 0):5.1f}x wall "
                    f"{med('cli', 'CLI', 1) / med('lone', s, 1):5.1f}x CPU"
                )
        if "cli" in ways and "train" in ways:
            for s in ("A", "B"):
                print(
                    f"CLI/{s} train {med('cli', 'CLI', 0) / med('train', s, 0):5.1f}x wall "
                    f"{med('cli', 'CLI', 1) / med('train', s, 1):5.1f}x CPU"
                )
        same = all(len(t) == 1 for t in trees.values())
        print(f"same final tree for every run of a way: {same}")
        if not same:
            sys.exit("MISMATCH: the binaries (or the CLI way) ended a way with different trees")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
