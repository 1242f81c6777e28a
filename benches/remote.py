#!/usr/bin/env python3
"""Landing through a shared remote: 4 clones x 8 tasks through one `git daemon`, git-hybrid vs
the CLI way, side by side in one run.

Setup (untimed, same for both sides): a repository of --files files pushed to a bare repository
served by `git daemon --enable=receive-pack` on loopback; --clones clones of it per side; in each
clone --tasks task branches, each adding its own file and changing one shared file's own line
range (so every landing needs a catch-up, none conflicts).

git-hybrid side: every clone runs `git hybrid merge <task>` for its tasks one after the other
(one landing per process, the way agents finishing at different times land), all clones at
once. Each landing fetches, squashes in memory on the remote's tip and publishes the squash with
its ledger record in one leased atomic push, retrying on a lost lease.

CLI way, same work: every clone, for each branch: `git fetch`, `git checkout -B main
origin/main`, `git merge --squash <branch>`, `git commit`, `git push origin main`; a rejected
push (someone else pushed) starts that branch over. All clones at once.

Checks afterwards: every task landed once, history linear, on the git-hybrid side one ledger
record per task on the remote and `git hybrid verify --all` green on a fresh clone after
`git hybrid fetch`. Prints wall time, ms per landing and the ratio (goal: >= 10x).

The train side: each clone lands its tasks with one `git hybrid merge t1 t2 ...` (one push per
clone), the way a dispatcher lands what finished together.

Usage: benches/remote.py [--clones 4] [--tasks 8] [--files 2000] [--bin target/release/git-hybrid]
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time


def run(cwd, *args, env, check=True):
    return subprocess.run(list(args), cwd=cwd, env=env, check=check, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def git(cwd, *args, env, check=True):
    return run(cwd, "git", *args, env=env, check=check)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_daemon(root, env):
    exec_path = git(root, "--exec-path", env=env).stdout.strip()
    for _ in range(10):
        port = free_port()
        proc = subprocess.Popen(
            [os.path.join(exec_path, "git-daemon"), "--enable=receive-pack", "--export-all",
             f"--base-path={root}", "--listen=127.0.0.1", f"--port={port}", "--reuseaddr", root],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return proc, f"git://127.0.0.1:{port}/origin.git"
            except OSError:
                time.sleep(0.02)
        proc.kill()
    sys.exit("git daemon did not start")


def make_side(tmp, name, a, env):
    """A served bare repository seeded with the template, and its clones with task branches."""
    side = os.path.join(tmp, name)
    server_root = os.path.join(side, "server")
    bare = os.path.join(server_root, "origin.git")
    os.makedirs(server_root)
    git(side, "init", "-q", "--bare", "-b", "main", bare, env=env)
    git(bare, "config", "receive.keepAlive", "0", env=env)
    daemon, url = start_daemon(server_root, env)
    seed = os.path.join(side, "seed")
    git(side, "clone", "-q", os.path.join(tmp, "template"), seed, env=env)
    git(seed, "push", "-q", bare, "main", env=env)
    clones = []
    for c in range(a.clones):
        d = os.path.join(side, f"clone{c}")
        git(side, "clone", "-q", url, d, env=env)
        clones.append(d)
    return daemon, url, bare, clones


def add_task_work(d, c, k, a, env):
    with open(os.path.join(d, f"work/c{c}_t{k}.txt"), "w") as f:
        f.write(f"clone {c} task {k}\n" * 20)
    shared = os.path.join(d, "shared.txt")
    lines = open(shared).read().splitlines(True)
    line = (c * a.tasks + k) * 3 + 1
    lines[line] = f"changed by clone {c} task {k}\n"
    open(shared, "w").writelines(lines)


def all_clones_at_once(worker, clones):
    """Runs `worker(c, clone)` for every clone, all at once; returns the wall seconds."""
    threads = [threading.Thread(target=worker, args=(c, d)) for c, d in enumerate(clones)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def hybrid_landings(binary, clones, a, env, train=False):
    """Starts the tasks (untimed), then lands them all clones at once; returns wall seconds.
    `train`: each clone lands all its tasks with one `git hybrid merge t1 t2 ...` (one push)."""
    for c, d in enumerate(clones):
        for k in range(a.tasks):
            out = run(d, binary, "start", f"c{c}t{k}", env=env)
            wt = out.stdout.strip().splitlines()[-1]
            add_task_work(wt, c, k, a, env)
            git(wt, "add", "-A", env=env)
            git(wt, "commit", "-q", "-m", f"c{c}t{k}", env=env)
    errors = []

    def worker(c, d):
        batches = [[f"c{c}t{k}" for k in range(a.tasks)]] if train else [[f"c{c}t{k}"] for k in range(a.tasks)]
        for ids in batches:
            out = run(d, binary, "merge", *ids, env=env, check=False)
            if out.returncode != 0:
                errors.append(f"{' '.join(ids)}: {out.stderr.strip()}")

    wall = all_clones_at_once(worker, clones)
    if errors:
        sys.exit("git-hybrid landings failed:\n" + "\n".join(errors))
    return wall


def cli_landings(clones, a, env):
    for c, d in enumerate(clones):
        for k in range(a.tasks):
            git(d, "checkout", "-q", "-b", f"b{k}", "main", env=env)
            add_task_work(d, c, k, a, env)
            git(d, "add", "-A", env=env)
            git(d, "commit", "-q", "-m", f"c{c}t{k}", env=env)
        git(d, "checkout", "-q", "main", env=env)
    retries = [0]
    lock = threading.Lock()

    def worker(c, d):
        for k in range(a.tasks):
            while True:
                git(d, "fetch", "-q", "origin", env=env)
                git(d, "checkout", "-q", "-B", "main", "origin/main", env=env)
                git(d, "merge", "--squash", "-q", f"b{k}", env=env)
                git(d, "commit", "-q", "-m", f"land c{c}t{k}", env=env)
                if git(d, "push", "-q", "origin", "main", env=env, check=False).returncode == 0:
                    break
                with lock:
                    retries[0] += 1

    return all_clones_at_once(worker, clones), retries[0]


def check_remote(bare, a, env, hybrid):
    n = a.clones * a.tasks
    log = git(bare, "log", "--format=%P", "main", env=env).stdout.split("\n")
    parents = [p for p in log if p.strip()]
    linear = all(len(p.split()) == 1 for p in parents)
    landings = len(parents)  # commits with a parent: every landing (the template is the root)
    records = 0
    if hybrid:
        refs = git(bare, "for-each-ref", "refs/hybrid/ledger/", env=env).stdout
        records = len([r for r in refs.splitlines() if r.strip()])
    return landings == n, linear, records


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--clones", type=int, default=4)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--bin", default=os.path.join(here, "..", "target", "release", "git-hybrid"))
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: build it with `cargo build --release`")

    tmp = tempfile.mkdtemp(prefix="bench-remote-")
    daemons = []
    try:
        empty = os.path.join(tmp, "empty.gitconfig")
        open(empty, "w").close()
        env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
        env.update({
            "GIT_CONFIG_GLOBAL": empty, "GIT_CONFIG_SYSTEM": empty, "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": tmp, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
        })
        template = os.path.join(tmp, "template")
        os.makedirs(os.path.join(template, "src"))
        os.makedirs(os.path.join(template, "work"))
        git(template, "init", "-q", "-b", "main", env=env)
        for i in range(a.files):
            with open(os.path.join(template, "src", f"f{i}.txt"), "w") as f:
                f.write(f"file {i}\n" * 40)
        with open(os.path.join(template, "shared.txt"), "w") as f:
            f.write("".join(f"line {i}\n" for i in range(a.clones * a.tasks * 3 + 3)))
        open(os.path.join(template, "work", ".keep"), "w").close()
        git(template, "add", "-A", env=env)
        git(template, "commit", "-q", "-m", "template", env=env)

        h_daemon, _, h_bare, h_clones = make_side(tmp, "hybrid", a, env)
        t_daemon, _, t_bare, t_clones = make_side(tmp, "train", a, env)
        c_daemon, _, c_bare, c_clones = make_side(tmp, "cli", a, env)
        daemons = [h_daemon, t_daemon, c_daemon]
        n = a.clones * a.tasks

        h_wall = hybrid_landings(binary, h_clones, a, env)
        t_wall = hybrid_landings(binary, t_clones, a, env, train=True)
        c_wall, c_retries = cli_landings(c_clones, a, env)

        h_all, h_linear, h_records = check_remote(h_bare, a, env, True)
        t_all, t_linear, t_records = check_remote(t_bare, a, env, True)
        c_all, c_linear, _ = check_remote(c_bare, a, env, False)
        fresh = os.path.join(tmp, "fresh")
        git(tmp, "clone", "-q", h_bare, fresh, env=env)
        run(fresh, binary, "fetch", env=env)
        verify = json.loads(run(fresh, binary, "--json", "verify", "--all", env=env, check=False).stdout)

        print(f"{a.clones} clones x {a.tasks} tasks = {n} landings through one git daemon, {a.files} files")
        print(f"{'':24}{'git-hybrid':>14}{'hybrid train':>14}{'CLI way':>14}")
        print(f"{'wall time (s)':24}{h_wall:14.2f}{t_wall:14.2f}{c_wall:14.2f}")
        print(f"{'ms per landing':24}{h_wall * 1000 / n:14.1f}{t_wall * 1000 / n:14.1f}{c_wall * 1000 / n:14.1f}")
        print(f"{'all landed once':24}{str(h_all):>14}{str(t_all):>14}{str(c_all):>14}")
        print(f"{'linear history':24}{str(h_linear):>14}{str(t_linear):>14}{str(c_linear):>14}")
        print(f"{'records on the remote':24}{h_records:>14}{t_records:>14}{'-':>14}")
        print(f"{'CLI rejected pushes':24}{'-':>14}{'-':>14}{c_retries:>14}")
        print(f"verify --all on a fresh clone: {'ok' if verify.get('ok') else 'FAILED'} "
              f"({len(verify.get('commits', []))} landings checked)")
        print(f"ratio (CLI / git-hybrid, one landing per process): {c_wall / h_wall:.1f}x")
        print(f"ratio (CLI / git-hybrid, one train per clone):     {c_wall / t_wall:.1f}x")
    finally:
        for d in daemons:
            d.kill()
            d.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
