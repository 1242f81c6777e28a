#!/usr/bin/env python3
"""Benchmark: landing 200 task branches with `git hybrid merge` vs the git CLI way.

Builds the release binary, makes a repository of FILES files (default 5,000) and TASKS task
branches (default 200) that each change or add one distinct file, copies it, then lands every
task in one copy with one `git-hybrid merge <task>` process each and in the other copy the CLI
way (`git checkout main`, `git merge --squash <branch>`, `git commit`), timing both in one run.

Setups for git-hybrid (each on its own identical copy):
  checked-out  the main checkout has `main` checked out, as a user's would be: every landing also
               moves that checkout's index and files (git read-tree -m -u)
  detached     the main checkout is not on `main` (nothing to keep coherent)
The CLI way always works in the checkout (that is how it works).

Prints ms per landing for each side and the ratio, and checks that both end with the same tree.
Usage: benches/land.py [--files N] [--tasks N] [--keep-dir]
"""

import argparse
import os
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


def time_hybrid(repo, env, binary, tasks):
    t0 = time.perf_counter()
    for t in range(tasks):
        p = subprocess.run([binary, "merge", f"t{t:03d}"], cwd=repo, env=env, capture_output=True)
        if p.returncode != 0:
            sys.exit(f"git-hybrid merge t{t:03d} failed ({p.returncode}): {p.stderr.decode()}")
    return time.perf_counter() - t0


def time_cli(repo, env, tasks):
    t0 = time.perf_counter()
    for t in range(tasks):
        git(repo, env, "checkout", "-q", "main")
        git(repo, env, "merge", "--squash", "-q", f"hybrid/t{t:03d}")
        git(repo, env, "commit", "-q", "-m", f"land t{t:03d}")
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--keep-dir", action="store_true")
    a = ap.parse_args()

    print("building release binary ...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.path.join(target_dir, "release", "git-hybrid")

    tmp = tempfile.mkdtemp(prefix="bench-land-")
    env = env_for(tmp)
    try:
        seed = os.path.join(tmp, "seed", "repo")
        print(f"making a repository with {a.files} files and {a.tasks} task branches ...", flush=True)
        make_repo(seed, env, a.files, a.tasks)
        tracked = len(git(seed, env, "ls-files").splitlines())
        copies = {}
        for name in ("checked-out", "detached", "cli"):
            dst = os.path.join(tmp, name, "repo")
            shutil.copytree(seed, dst, symlinks=True)
            copies[name] = dst
        git(copies["detached"], env, "checkout", "-q", "--detach", "main")

        results = {}
        for name in ("checked-out", "detached"):
            print(f"git-hybrid ({name}): landing {a.tasks} tasks ...", flush=True)
            results[name] = time_hybrid(copies[name], env, binary, a.tasks)
        print(f"git CLI: landing {a.tasks} tasks ...", flush=True)
        results["cli"] = time_cli(copies["cli"], env, a.tasks)

        trees = {n: git(p, env, "rev-parse", "main^{tree}").strip() for n, p in copies.items()}
        same = len(set(trees.values())) == 1
        counts = {n: git(p, env, "rev-list", "--count", "main").strip() for n, p in copies.items()}
        status = git(copies["checked-out"], env, "status", "--porcelain").strip()

        per = {n: 1000 * s / a.tasks for n, s in results.items()}
        print()
        print(f"repository: {tracked} tracked files, {a.tasks} landings each (one process per landing)")
        print(f"{'way':<36}{'total s':>10}{'ms/landing':>12}")
        print(f"{'git-hybrid, target checked out':<36}{results['checked-out']:>10.2f}{per['checked-out']:>12.1f}")
        print(f"{'git-hybrid, target not checked out':<36}{results['detached']:>10.2f}{per['detached']:>12.1f}")
        print(f"{'git CLI (checkout, merge --squash, commit)':<36}{results['cli']:>10.2f}{per['cli']:>12.1f}")
        print()
        print(f"ratio CLI / git-hybrid (target checked out):     {per['cli'] / per['checked-out']:.1f}x")
        print(f"ratio CLI / git-hybrid (target not checked out): {per['cli'] / per['detached']:.1f}x")
        print(f"same final tree on all three: {same}; commits on main: {counts}")
        print(f"main checkout clean after git-hybrid landings: {status == ''}")
        if not same or status:
            sys.exit("MISMATCH")
    finally:
        if a.keep_dir:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
