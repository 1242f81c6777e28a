#!/usr/bin/env python3
"""Benchmark: landing task branches in a real repository (a clone of git/git), side by side.

The synthetic `land.py` uses a short history with fresh dates. This one lands task branches in a
clone of git/git (about 4,800 files, 80,000 commits) so that anything that walks history, reads a
large index or trips on real (and skewed) commit dates shows up.

Preparation (`--source`): a git/git repository on this machine (a clone, a bare mirror, or the
git directory the project's `fetch` tool brings: /work/.mirror/git+git/repo). It is cloned locally
(objects hard-linked, never modified), `git commit-graph write --reachable` is run (git writes one
on `gc`; libgit2 reads it), and the target `main` is the source's HEAD, checked out.

Tasks: TASKS task branches `hybrid/t000..`, each one commit on `main`'s tip that appends a line to
a distinct real file. Their dates are real: task i takes the author and committer dates of the
i-th most recent non-merge commit of git/git's history (`--dates real`, the default), which are
all EARLIER than main's tip: exactly the clock-skew shape that makes date-ordered walks go deep.
`--dates now` dates them after the tip instead.

Ways, each on its own clone, taking turns CHUNK tasks at a time so machine load hits all alike:
  lone         one `git hybrid merge <task>` process per landing, main checked out
  train        one `git hybrid merge t.. t..` process per turn (a train), main checked out
  cli          the CLI way in the checked-out main: `git merge --squash <branch>` + `git commit`
  keep         (after the turns) `git hybrid merge --keep` of tasks with worktrees that need a
               catch-up (main moved since they started): the kept worktree is moved too
Prints wall and CPU ms per landing, the ratios CLI / git-hybrid, and checks that every way ends
with the same tree and a clean checkout.

Usage: benches/realrepo.py [--source DIR] [--tasks N] [--chunk N] [--dates real|now] [--no-build]
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SOURCE = "/work/.mirror/git+git/repo"


def env_for(tmp):
    cfg = os.path.join(tmp, "empty.gitconfig")
    open(cfg, "w").close()
    e = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    e.update(
        GIT_CONFIG_GLOBAL=cfg,
        GIT_CONFIG_SYSTEM=cfg,
        GIT_CONFIG_NOSYSTEM="1",
        HOME=tmp,
        GIT_AUTHOR_NAME="Bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="Bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
        LC_ALL="C",
    )
    return e


def git(repo, env, *args, stdin=None, extra_env=None):
    e = dict(env, **(extra_env or {}))
    p = subprocess.run(["git", *args], cwd=repo, env=e, input=stdin, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"git {' '.join(args)} failed in {repo}: {p.stderr.decode()}")
    return p.stdout.decode()


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(fn):
    c0, t0 = cpu_children(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu_children() - c0


def prepare_seed(source, seed, env, tasks, dates):
    """Clones the source, writes a commit-graph, makes the task branches on main's tip."""
    git(os.path.dirname(seed), env, "clone", "-q", "--no-checkout", source, seed)
    head = git(seed, env, "rev-parse", "HEAD").strip()
    git(seed, env, "checkout", "-q", "-B", "main", head)
    git(seed, env, "remote", "remove", "origin")
    git(seed, env, "commit-graph", "write", "--reachable")
    files = [f for f in git(seed, env, "ls-files").splitlines() if f.endswith((".c", ".h", ".sh", ".txt"))]
    # Distinct files spread over the tree, the same choice on every run.
    step = max(1, len(files) // tasks)
    chosen = files[::step][:tasks]
    real = git(seed, env, "log", "--no-merges", f"-n{tasks}", "--format=%ad|%cd", "--date=raw", head).splitlines()
    idx = os.path.join(os.path.dirname(seed), "task.index")
    for t, path in enumerate(chosen):
        ad, cd = real[t].split("|") if dates == "real" else ("", "")
        blob_src = git(seed, env, "show", f"{head}:{path}", stdin=None)
        new = blob_src + f"\n/* task {t} was here */\n"
        blob = git(seed, env, "hash-object", "-w", "--stdin", stdin=new.encode()).strip()
        ienv = {"GIT_INDEX_FILE": idx}
        git(seed, env, "read-tree", head, extra_env=ienv)
        mode = git(seed, env, "ls-tree", head, "--", path).split()[0]
        git(seed, env, "update-index", "--cacheinfo", f"{mode},{blob},{path}", extra_env=ienv)
        tree = git(seed, env, "write-tree", extra_env=ienv).strip()
        denv = {"GIT_AUTHOR_DATE": ad, "GIT_COMMITTER_DATE": cd} if dates == "real" else {}
        c = git(seed, env, "commit-tree", tree, "-p", head, "-m", f"task {t}: touch {path}", extra_env=denv).strip()
        git(seed, env, "update-ref", f"refs/heads/hybrid/t{t:03d}", c)
    os.remove(idx)
    return len(chosen)


def clone_way(seed, dst, env):
    git(os.path.dirname(dst), env, "clone", "-q", "--no-checkout", seed, dst)
    git(dst, env, "remote", "remove", "origin")
    for ref in git(seed, env, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/hybrid/").splitlines():
        name, oid = ref.split()
        git(dst, env, "update-ref", name, oid)
    git(dst, env, "checkout", "-q", "main")
    git(dst, env, "commit-graph", "write", "--reachable")


def run(binary, repo, env, *args):
    p = subprocess.run([binary, *args], cwd=repo, env=env, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"git-hybrid {' '.join(args)} failed ({p.returncode}): {p.stderr.decode()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default=DEFAULT_SOURCE)
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--chunk", type=int, default=30)
    ap.add_argument("--keep-tasks", type=int, default=10)
    ap.add_argument("--dates", choices=["real", "now"], default="real")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--dir")
    a = ap.parse_args()
    if not os.path.isdir(a.source):
        sys.exit(f"no git/git repository at {a.source}: pass --source (a clone of https://github.com/git/git)")
    if not a.no_build:
        print("building release binary ...", flush=True)
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "git-hybrid")

    tmp = tempfile.mkdtemp(prefix="bench-realrepo-", dir=a.dir)
    env = env_for(tmp)
    try:
        seed = os.path.join(tmp, "seed")
        print(f"preparing a clone of {a.source} with {a.tasks} task branches ({a.dates} dates) ...", flush=True)
        n = prepare_seed(a.source, seed, env, a.tasks, a.dates)
        commits = git(seed, env, "rev-list", "--count", "main").strip()
        tracked = len(git(seed, env, "ls-files").splitlines())
        ways = ["lone", "train", "cli"]
        copies = {}
        for w in ways:
            copies[w] = os.path.join(tmp, w)
            clone_way(seed, copies[w], env)
        res = {w: [0.0, 0.0] for w in ways}
        load0 = os.getloadavg()[0]
        for start in range(0, n, a.chunk):
            chunk = [f"t{t:03d}" for t in range(start, min(start + a.chunk, n))]
            for w in ways:
                repo = copies[w]
                if w == "lone":
                    fn = lambda: [run(binary, repo, env, "merge", t) for t in chunk]  # noqa: E731
                elif w == "train":
                    fn = lambda: run(binary, repo, env, "merge", *chunk)  # noqa: E731
                else:

                    def fn():
                        for t in chunk:
                            git(repo, env, "merge", "--squash", "-q", f"hybrid/{t}")
                            git(repo, env, "commit", "-q", "-m", f"land {t}")

                wall, cpu = timed(fn)
                res[w][0] += wall
                res[w][1] += cpu
        load1 = os.getloadavg()[0]

        # --keep with a catch-up: tasks started with worktrees, then main moves, then each lands.
        keep = os.path.join(tmp, "keep")
        clone_way(seed, keep, env)
        k = min(a.keep_tasks, n)
        spare = [f for f in git(keep, env, "ls-files", "--", "Documentation/*.adoc").splitlines()][:k]
        for t, path in enumerate(spare):
            wt = subprocess.run([binary, "start", f"k{t:03d}"], cwd=keep, env=env, capture_output=True, text=True)
            if wt.returncode != 0:
                sys.exit(f"start failed: {wt.stderr}")
            wt_dir = wt.stdout.strip().splitlines()[-1]
            with open(os.path.join(wt_dir, path), "a") as f:
                f.write(f"\nkept task {t}\n")
            git(wt_dir, env, "commit", "-q", "-am", f"keep task {t}")
        k = len(spare)
        # main moves under them, so each needs a catch-up (which --keep applies to its worktree).
        for t in range(k):
            git(keep, env, "merge", "--squash", "-q", f"hybrid/t{t:03d}")
            git(keep, env, "commit", "-q", "-m", f"land t{t:03d}")
        keep_wall, keep_cpu = timed(lambda: [run(binary, keep, env, "merge", "--keep", f"k{t:03d}") for t in range(k)])

        trees = {w: git(p, env, "rev-parse", "main^{tree}").strip() for w, p in copies.items()}
        dirty = {w: git(p, env, "status", "--porcelain", "--untracked-files=no").strip() for w, p in copies.items()}
        print()
        print(f"repository: git/git, {tracked} tracked files, {commits} commits on main, {n} landings per way")
        print(f"task dates: {a.dates}; load average (1 min) before/after: {load0:.2f} / {load1:.2f} on {os.cpu_count()} CPUs")
        print(f"{'way':<50}{'wall ms/landing':>17}{'CPU ms/landing':>16}")
        labels = {
            "lone": "git-hybrid, one `merge` per landing (checked out)",
            "train": f"git-hybrid train, {a.chunk} per `merge` process",
            "cli": "git CLI: merge --squash + commit (checked out)",
        }
        per = {w: (1000 * res[w][0] / n, 1000 * res[w][1] / n) for w in ways}
        for w in ways:
            print(f"{labels[w]:<50}{per[w][0]:>17.1f}{per[w][1]:>16.1f}")
        print(f"{'git-hybrid merge --keep with catch-up':<50}{1000 * keep_wall / k:>17.1f}{1000 * keep_cpu / k:>16.1f}")
        print()
        for w in ("lone", "train"):
            print(
                f"ratio CLI / {w:<6} {per['cli'][0] / per[w][0]:6.1f}x wall  {per['cli'][1] / per[w][1]:6.1f}x CPU"
            )
        same = len(set(trees.values())) == 1
        print(f"same final tree on all ways: {same}; checkouts clean: {all(v == '' for v in dirty.values())}")
        if not same or any(dirty.values()):
            sys.exit("MISMATCH")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
