#!/usr/bin/env python3
"""Benchmark: landing 200 task branches with `git hybrid merge` vs the git CLI way.

Builds the release binary, makes a repository of FILES files (default 5,000) and TASKS task
branches (default 200) that each change or add one distinct file, copies it, then lands every
task in one copy with one `git-hybrid merge <task>` process each and in the other copy the CLI
way (`git checkout main`, `git merge --squash <branch>`, `git commit`), timing both in one run.

Setups (each on its own identical copy):
  checked-out  the main checkout has `main` checked out, as a user's would be: every landing also
               moves that checkout's index and files (in process where provably equivalent to
               `git read-tree -m -u`, which it is here)
  read-tree    the same with the in-process path disabled (HYBRID_NO_FAST_CHECKOUT=1)
  detached     the main checkout is not on `main` (nothing to keep coherent)
  train        checked out, each turn's tasks given to one `git hybrid merge t000 t001 ...` process:
               a train, each task its own squash commit, the target moved once per process
  cli          `git checkout main`, `git merge --squash`, `git commit` per task, in the checkout
  train-all    after the turns, on its own copy: all tasks in one `git hybrid merge` process

The ways take turns landing --chunk tasks each (default 20), so changing load from other processes
hits all of them alike. Prints wall and CPU (user+sys of the processes run) ms per landing for each way, the load average,
and the ratios: the headline is the train (how git-hybrid lands several ready tasks), next to
one landing per process. Checks that all copies end with the same tree and clean checkouts.
Usage: benches/land.py [--files N] [--tasks N] [--chunk N] [--dir PARENT] [--keep-dir]
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_for(tmp):
    cfg = os.path.join(tmp, "empty.gitconfig")
    open(cfg, "w").close()
    e = dict(os.environ)
    for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        e.pop(k, None)
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


def git(repo, env, *args, stdin=None):
    p = subprocess.run(["git", *args], cwd=repo, env=env, input=stdin, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"git {' '.join(args)} failed: {p.stderr.decode()}")
    return p.stdout.decode()


def make_repo(path, env, files, tasks):
    os.makedirs(path)
    git(path, env, "init", "-q", "-b", "main")
    # One fast-import stream: the base commit with FILES files, then one branch per task.
    stream = []
    mark = 0

    def blob(data):
        nonlocal mark
        mark += 1
        b = data.encode()
        stream.append(b"blob\nmark :%d\ndata %d\n%s\n" % (mark, len(b), b))
        return mark

    base_marks = []
    for i in range(files):
        body = "".join(f"file {i} line {j}\n" for j in range(20))
        base_marks.append((f"src/d{i // 100:03d}/f{i:05d}.txt", blob(body)))
    stream.append(b"commit refs/heads/main\nmark :%d\n" % (mark + 1))
    mark += 1
    base = mark
    stream.append(b"committer Bench <bench@example.com> 1767225600 +0000\ndata 4\nbase\n")
    for path_, m in base_marks:
        stream.append(b"M 100644 :%d %s\n" % (m, path_.encode()))
    stream.append(b"\n")
    for t in range(tasks):
        if t % 2 == 0:  # change an existing file
            i = (t * 37) % files
            p = f"src/d{i // 100:03d}/f{i:05d}.txt"
            body = "".join(f"file {i} line {j}\n" for j in range(20)).replace("line 7\n", f"line 7 task {t}\n")
        else:  # add a new file
            p = f"tasks/t{t:03d}/new.txt"
            body = f"added by task {t}\n"
        m = blob(body)
        stream.append(b"commit refs/heads/hybrid/t%03d\n" % t)
        stream.append(b"committer Bench <bench@example.com> 1767225600 +0000\n")
        msg = f"task {t}: edit {p}".encode()
        stream.append(b"data %d\n%s\nfrom :%d\nM 100644 :%d %s\n\n" % (len(msg), msg, base, m, p.encode()))
    git(path, env, "fast-import", "--quiet", stdin=b"".join(stream))
    git(path, env, "checkout", "-q", "-f", "main")
    # The worktree root must be outside or ignored; default is a sibling folder, which is fine.


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(fn):
    """Runs fn(); returns (wall seconds, CPU seconds of the child processes it ran)."""
    c0, t0 = cpu_children(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu_children() - c0


def land_each(repo, env, binary, tasks):
    for t in tasks:
        p = subprocess.run([binary, "merge", f"t{t:03d}"], cwd=repo, env=env, capture_output=True)
        if p.returncode != 0:
            sys.exit(f"git-hybrid merge t{t:03d} failed ({p.returncode}): {p.stderr.decode()}")


def land_batch(repo, env, binary, tasks):
    p = subprocess.run([binary, "merge", *[f"t{t:03d}" for t in tasks]], cwd=repo, env=env, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"git-hybrid merge (batch) failed ({p.returncode}): {p.stderr.decode()}")


def land_cli(repo, env, tasks):
    for t in tasks:
        git(repo, env, "checkout", "-q", "main")
        git(repo, env, "merge", "--squash", "-q", f"hybrid/t{t:03d}")
        git(repo, env, "commit", "-q", "-m", f"land t{t:03d}")


WAYS = [
    # name, label, setup
    ("checked-out", "git-hybrid, target checked out", "per-process"),
    ("read-tree", "  same, fast checkout path disabled", "per-process"),
    ("detached", "git-hybrid, target not checked out", "per-process"),
    ("train", "git-hybrid train, one `merge` per turn (checked out)", "batch"),
    ("cli", "git CLI (checkout, merge --squash, commit)", "cli"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=20, help="tasks per turn (and per batch process)")
    ap.add_argument("--keep-dir", action="store_true")
    ap.add_argument("--dir", help="parent folder for the repositories (default: the system temp folder)")
    a = ap.parse_args()

    print("building release binary ...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.path.join(target_dir, "release", "git-hybrid")

    tmp = tempfile.mkdtemp(prefix="bench-land-", dir=a.dir)
    env = env_for(tmp)
    slow_env = dict(env, HYBRID_NO_FAST_CHECKOUT="1")
    try:
        seed = os.path.join(tmp, "seed", "repo")
        print(f"making a repository with {a.files} files and {a.tasks} task branches ...", flush=True)
        make_repo(seed, env, a.files, a.tasks)
        tracked = len(git(seed, env, "ls-files").splitlines())
        copies = {}
        for name, _, _ in WAYS:
            dst = os.path.join(tmp, name, "repo")
            shutil.copytree(seed, dst, symlinks=True)
            copies[name] = dst
        git(copies["detached"], env, "checkout", "-q", "--detach", "main")

        # The ways take turns, CHUNK tasks at a time, so that load from other processes and the
        # file system's state (which both change over a run on a shared machine) hit all alike.
        load_before = os.getloadavg()
        results = {name: (0.0, 0.0) for name, _, _ in WAYS}
        print(f"landing {a.tasks} tasks each way, {a.chunk} at a time, ways taking turns ...", flush=True)
        for start in range(0, a.tasks, a.chunk):
            chunk = range(start, min(start + a.chunk, a.tasks))
            for name, label, kind in WAYS:
                repo = copies[name]
                if kind == "cli":
                    w, c = timed(lambda: land_cli(repo, env, chunk))
                elif kind == "batch":
                    w, c = timed(lambda: land_batch(repo, env, binary, chunk))
                else:
                    e = slow_env if name == "read-tree" else env
                    w, c = timed(lambda: land_each(repo, e, binary, chunk))
                results[name] = (results[name][0] + w, results[name][1] + c)
        load_after = os.getloadavg()
        # The whole set as one train, on its own copy, timed once after the turns.
        all_copy = os.path.join(tmp, "train-all", "repo")
        shutil.copytree(seed, all_copy, symlinks=True)
        all_wall, all_cpu = timed(lambda: land_batch(all_copy, env, binary, range(a.tasks)))
        copies["train-all"] = all_copy

        trees = {n: git(p, env, "rev-parse", "main^{tree}").strip() for n, p in copies.items()}
        same = len(set(trees.values())) == 1
        counts = {n: git(p, env, "rev-list", "--count", "main").strip() for n, p in copies.items()}
        dirty = {
            n: git(copies[n], env, "status", "--porcelain").strip()
            for n in ("checked-out", "read-tree", "train", "train-all")
        }

        print()
        fs = subprocess.run(["stat", "-f", "-c", "%T", tmp], capture_output=True, text=True).stdout.strip()
        print(f"repository: {tracked} tracked files, {a.tasks} landings each, in {tmp} ({fs})")
        print(f"load average (1 min) before/after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} CPUs")
        print(f"{'way':<52}{'wall s':>8}{'wall ms/landing':>17}{'CPU ms/landing':>16}")
        per = {}
        for name, label, _ in WAYS:
            wall, cpu = results[name]
            per[name] = (1000 * wall / a.tasks, 1000 * cpu / a.tasks)
            print(f"{label:<52}{wall:>8.2f}{per[name][0]:>17.1f}{per[name][1]:>16.1f}")
        per["train-all"] = (1000 * all_wall / a.tasks, 1000 * all_cpu / a.tasks)
        label = f"git-hybrid, all {a.tasks} as one train (after the turns)"
        print(f"{label:<52}{all_wall:>8.2f}{per['train-all'][0]:>17.1f}{per['train-all'][1]:>16.1f}")
        print()

        def ratio(n):
            return f"{per['cli'][0] / per[n][0]:.1f}x wall, {per['cli'][1] / per[n][1]:.1f}x CPU"

        print(f"headline: landing {a.tasks} ready tasks, {a.chunk} per `git hybrid merge` (a train), target checked out:")
        print(f"  ratio CLI / git-hybrid train:                    {ratio('train')}")
        print(f"  ratio CLI / git-hybrid, all {a.tasks} in one train:     {ratio('train-all')}")
        print("one landing per process (what a single `git hybrid merge <task>` costs):")
        print(f"  ratio CLI / git-hybrid (target checked out):     {ratio('checked-out')}")
        print(f"  ratio CLI / git-hybrid (target not checked out): {ratio('detached')}")
        print(f"same final tree on all: {same}; commits on main: {counts}")
        print(f"main checkout clean after git-hybrid landings: {all(v == '' for v in dirty.values())}")
        if not same or any(dirty.values()):
            sys.exit("MISMATCH")
    finally:
        if a.keep_dir:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
