#!/usr/bin/env python3
"""Pre-commit hook overhead: `git commit` with no hook vs with git-hybrid's hooks installed.

Builds git-hybrid (release), makes a repository of --files files (default 5,000), starts a task
worktree whose plan entry claims `src/**` (so the claim check, the secret scan of the staged
additions and the checkpoint all run), then times --n commits each way, interleaved so that
machine noise hits both sides alike:

  * anchor:  git -c core.hooksPath=<empty dir> commit   (git CLI, no hook at all)
  * no-op:   git -c core.hooksPath=<dir> commit with a `#!/bin/sh exit 0` pre-commit hook
             (what any hook costs: git forks it and re-reads the index afterwards)
  * hybrid:  git commit                                 (wrapper -> git-hybrid hooks run pre-commit)

Each commit stages a one-line change to one file. Prints p50/p95 wall time of both, the p50
difference (the hook's overhead; the target is <= 15 ms) and the ratio, and the CPU time per
commit of git plus everything it waited for (hook, git-hybrid), which other load on the machine
does not inflate.

    python3 benches/precommit.py [--n 60] [--files 5000] [--no-build]
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def pct(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="commits per side (default 60)")
    ap.add_argument("--files", type=int, default=5000, help="files in the repository (default 5000)")
    ap.add_argument("--no-build", action="store_true", help="use the existing target/release binary")
    args = ap.parse_args()

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", os.path.join(ROOT, "Cargo.toml")],
                       check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.path.join(target, "release", "git-hybrid")
    if not os.access(binary, os.X_OK):
        sys.exit(f"no binary at {binary}; build it first")

    tmp = tempfile.mkdtemp(prefix="git-hybrid-bench-precommit-")
    empty_cfg = os.path.join(tmp, "empty.gitconfig")
    open(empty_cfg, "w").close()
    no_hooks = os.path.join(tmp, "no-hooks")
    os.makedirs(no_hooks)
    noop_hooks = os.path.join(tmp, "noop-hooks")
    os.makedirs(noop_hooks)
    with open(os.path.join(noop_hooks, "pre-commit"), "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(os.path.join(noop_hooks, "pre-commit"), 0o755)
    env = dict(os.environ)
    for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(k, None)
    env.update({
        "GIT_CONFIG_GLOBAL": empty_cfg, "GIT_CONFIG_SYSTEM": empty_cfg, "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": tmp, "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
        "PATH": os.path.dirname(binary) + os.pathsep + env.get("PATH", ""), "NO_COLOR": "1",
    })

    def run(cwd, *cmd):
        return subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True).stdout.strip()

    repo = os.path.join(tmp, "repo")
    os.makedirs(repo)
    run(repo, "git", "init", "-q", "-b", "main")
    per_dir = 100
    for i in range(args.files):
        d = os.path.join(repo, "src", f"mod{i // per_dir:03d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file{i % per_dir:03d}.txt"), "w") as f:
            f.write(f"file {i}\nsome content line\n")
    with open(os.path.join(repo, "hybrid.toml"), "w") as f:
        f.write('[[task]]\nid = "bench"\ntouches = ["src/**"]\n')
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "initial")
    tracked = int(run(repo, "git", "ls-files", "--cached").count("\n")) + 1
    run(repo, binary, "hooks", "install")
    wt = run(repo, binary, "start", "bench")

    def commit(i, side):
        path = os.path.join(wt, "src", f"mod{(i * 7) % (args.files // per_dir):03d}", f"file{i % per_dir:03d}.txt")
        with open(path, "a") as f:
            f.write(f"change {i} {side}\n")
        run(wt, "git", "add", path)
        cmd = ["git", "commit", "-q", "-m", f"commit {i}"]
        if side == "plain":
            cmd[1:1] = ["-c", f"core.hooksPath={no_hooks}"]
        elif side == "noop":
            cmd[1:1] = ["-c", f"core.hooksPath={noop_hooks}"]
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=wt, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        dt = (time.perf_counter() - t0) * 1000.0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            sys.exit(f"commit failed: {p.stderr}")
        # CPU of git and everything it waited for (the hook, git-hybrid): immune to machine load.
        cpu = ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) * 1000.0
        return dt, cpu

    sides = ["plain", "noop", "hybrid"]
    for i in range(3):  # warm the page cache and every code path
        for k, side in enumerate(sides):
            commit(100_000 + 3 * i + k, side)
    results = {side: [] for side in sides}
    for i in range(args.n):
        # Rotate which side goes first to cancel drift.
        order = sides[i % 3:] + sides[:i % 3]
        for side in order:
            results[side].append(commit(3 * i + sides.index(side), side))
    wall = {side: [w for w, _ in results[side]] for side in sides}
    cpu = {side: [c for _, c in results[side]] for side in sides}
    plain, hooked = wall["plain"], wall["hybrid"]
    checkpoints = run(repo, "git", "rev-list", "--count", "refs/hybrid/checkpoints/bench")

    med = statistics.median
    p50a, p95a = med(plain), pct(plain, 95)
    p50h, p95h = med(hooked), pct(hooked, 95)
    p50n, p95n = med(wall["noop"]), pct(wall["noop"], 95)
    print(f"repository: {tracked} tracked files; {args.n} commits per side; task worktree with claims")
    print(f"{'side':<34} {'p50 ms':>8} {'p95 ms':>8} {'CPU p50 ms':>11}")
    print(f"{'git commit, no hook (anchor)':<34} {p50a:>8.2f} {p95a:>8.2f} {med(cpu['plain']):>11.2f}")
    print(f"{'git commit, no-op sh hook':<34} {p50n:>8.2f} {p95n:>8.2f} {med(cpu['noop']):>11.2f}")
    print(f"{'git commit + git-hybrid hooks':<34} {p50h:>8.2f} {p95h:>8.2f} {med(cpu['hybrid']):>11.2f}")
    print(f"overhead p50 (hybrid - anchor): {p50h - p50a:+.2f} ms wall (target <= 15 ms), "
          f"{med(cpu['hybrid']) - med(cpu['plain']):+.2f} ms CPU; ratio p50 {p50h / p50a:.2f}x")
    print(f"of which any hook costs (no-op - anchor): {p50n - p50a:+.2f} ms wall, "
          f"{med(cpu['noop']) - med(cpu['plain']):+.2f} ms CPU")
    print("CPU = user+sys of git and everything it waited for (hook, git-hybrid); other load barely moves it")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"checkpoint commits recorded: {checkpoints}")
    print(f"(work dir {tmp}; remove it when done)")


if __name__ == "__main__":
    main()
