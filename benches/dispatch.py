#!/usr/bin/env python3
"""Dispatch overhead per task: git-hybrid dispatch vs spawning the same agent directly.

Work: 50 tasks whose agent is a no-op script (`builtin:script noop.sh`) dispatched at -j 8.

git-hybrid side, per task, from the run's meta.json and the agent's own timestamp:
    overhead = (worktree_begin - picked) + (agent_start - worktree_ready)
i.e. from the scheduler choosing the task to the agent process running its first command,
excluding the worktree checkout itself (worktree_begin .. worktree_ready). It includes
opening the repository, the pre-dispatch sync, writing the prompt and the ledger, spawning.

Anchor, same run: spawn `sh noop.sh` directly (same script, prompt on stdin, cwd = a
checkout) 50 times from Python; latency = agent_start - time just before the spawn.

Both sides record agent_start the same way (`date +%s%N` inside the script). Prints p50 and
p95 of both and their ratio. Goal: git-hybrid p50 under 20 ms.

Usage: benches/dispatch.py [--tasks 50] [--jobs 8] [--bin target/release/git-hybrid]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

NOOP = """#!/bin/sh
date +%s%N > "${HYBRID_RUN_DIR:-$ANCHOR_DIR}/agent_start"
"""


def pct(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def git(cwd, *args, env):
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--bin", default=os.path.join(here, "..", "target", "release", "git-hybrid"))
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: build it with `cargo build --release`")

    tmp = tempfile.mkdtemp(prefix="bench-dispatch-")
    try:
        empty = os.path.join(tmp, "empty.gitconfig")
        open(empty, "w").close()
        env = dict(os.environ)
        for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
            env.pop(k, None)
        env.update({
            "GIT_CONFIG_GLOBAL": empty, "GIT_CONFIG_SYSTEM": empty, "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
        })
        repo = os.path.join(tmp, "repo")
        os.makedirs(repo)
        git(repo, "init", "-q", env=env)
        git(repo, "symbolic-ref", "HEAD", "refs/heads/main", env=env)
        with open(os.path.join(repo, "noop.sh"), "w") as f:
            f.write(NOOP)
        for i in range(20):
            with open(os.path.join(repo, f"file{i}.txt"), "w") as f:
                f.write(f"content {i}\n")
        plan = ['[agent]\ncommand = ["builtin:script", "noop.sh"]\n']
        for i in range(a.tasks):
            plan.append(f'[[task]]\nid = "t{i:03}"\nprompt = "nothing to do"\n')
        with open(os.path.join(repo, "hybrid.toml"), "w") as f:
            f.write("\n".join(plan))
        git(repo, "add", "-A", env=env)
        git(repo, "commit", "-q", "-m", "bench", env=env)

        # git-hybrid.
        t0 = time.perf_counter()
        r = subprocess.run([binary, "dispatch", "-j", str(a.jobs)], cwd=repo, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"dispatch failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        runs = os.path.join(repo, ".git", "hybrid", "runs")
        ours, to_spawn, checkout, steps = [], [], [], []
        for i in range(a.tasks):
            d = os.path.join(runs, f"t{i:03}", "1", "1")
            with open(os.path.join(d, "meta.json")) as f:
                tm = json.load(f)["timing"]
            with open(os.path.join(d, "agent_start")) as f:
                agent_start = int(f.read().strip())
            ours.append(((tm["worktree_begin_ns"] - tm["picked_ns"]) + (agent_start - tm["worktree_ready_ns"])) / 1e6)
            to_spawn.append(((tm["worktree_begin_ns"] - tm["picked_ns"]) + (tm["spawned_ns"] - tm["worktree_ready_ns"])) / 1e6)
            checkout.append((tm["worktree_ready_ns"] - tm["worktree_begin_ns"]) / 1e6)
            steps.append((
                (tm["worktree_begin_ns"] - tm["picked_ns"]) / 1e6,
                (tm["synced_ns"] - tm["worktree_ready_ns"]) / 1e6,
                (tm["prepared_ns"] - tm["synced_ns"]) / 1e6,
                (tm["spawn_ns"] - tm["prepared_ns"]) / 1e6,
                (tm["spawned_ns"] - tm["spawn_ns"]) / 1e6,
                (agent_start - tm["spawned_ns"]) / 1e6,
            ))

        # Anchor: the same script spawned directly, prompt on stdin, cwd = the checkout.
        anchor = []
        adir = os.path.join(tmp, "anchor")
        os.makedirs(adir)
        prompt = os.path.join(adir, "prompt.md")
        with open(prompt, "w") as f:
            f.write("nothing to do\n")
        aenv = dict(env, ANCHOR_DIR=adir)
        for _ in range(a.tasks):
            with open(prompt) as stdin:
                start = time.time_ns()
                subprocess.run(["sh", os.path.join(repo, "noop.sh")], cwd=repo, env=aenv, stdin=stdin, check=True)
            with open(os.path.join(adir, "agent_start")) as f:
                anchor.append((int(f.read().strip()) - start) / 1e6)

        # Context: the launch path makes one durable ledger write (fsync) per task.
        fs = []
        probe = os.path.join(repo, ".git", "fsync-probe")
        for _ in range(20):
            start = time.perf_counter()
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.write(fd, b"x" * 1000)
            os.fsync(fd)
            os.close(fd)
            fs.append((time.perf_counter() - start) * 1000)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

        p50, p95 = pct(ours, 50), pct(ours, 95)
        a50, a95 = pct(anchor, 50), pct(anchor, 95)
        print(f"dispatch overhead, {a.tasks} no-op agents at -j {a.jobs} (wall {wall:.2f} s for the whole dispatch)")
        print(f"  git-hybrid: pick -> agent running, excl. checkout  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms")
        print(f"    of which pick -> process spawned (excl. checkout) p50 {pct(to_spawn, 50):7.2f} ms  p95 {pct(to_spawn, 95):7.2f} ms")
        print(f"    worktree checkout (excluded)                      p50 {pct(checkout, 50):7.2f} ms  p95 {pct(checkout, 95):7.2f} ms")
        names = ["pick -> checkout starts", "sync", "prompt + run files", "launch setup (files, env)",
                 "spawn call", "process start -> agent's first command"]
        for k, name in enumerate(names):
            col = [s[k] for s in steps]
            print(f"      {name:<45} p50 {pct(col, 50):7.2f} ms  p95 {pct(col, 95):7.2f} ms")
        print(f"  anchor: spawn sh noop.sh directly                   p50 {a50:7.2f} ms  p95 {a95:7.2f} ms")
        print(f"  ratio git-hybrid/anchor                             p50 {p50 / a50:7.2f}x    p95 {p95 / a95:7.2f}x")
        print(f"  goal p50 < 20 ms: {'met' if p50 < 20 else 'NOT met'}")
        print(f"  machine: one fsync of a small file p50 {pct(fs, 50):.2f} ms; load average {load:.2f} on {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
