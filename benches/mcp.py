#!/usr/bin/env python3
"""MCP tool-call latency: `git hybrid mcp` over stdio vs asking the raw-shell way.

Work: a repository whose ledger holds 200 landed tasks (dispatched once with a trivial
`builtin:script` agent that writes progress.md and commits). Then, interleaved round by round:

- git-hybrid side: one `git hybrid mcp` process; JSON-RPC `tools/call` over its stdin/stdout
  for `status` of one task, `status` of all 200, and `task_log` (tail of progress.md), each
  timed from writing the request to reading the response line.
- anchor: what a supervisor with a Bash tool does, spawning `git hybrid status --json <task>`
  (and `status --json`) per question.

The client is plain JSON-RPC (stdlib only), so it measures the server, not an SDK. Prints p50
and p95 per call for each. Goal: p50 < 2 ms per tool call.

Usage: benches/mcp.py [--tasks 200] [--calls 300] [--bin target/release/git-hybrid]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

AGENT = """#!/bin/sh
echo "working on $HYBRID_TASK_ID" >> "$HYBRID_PROGRESS"
echo "$HYBRID_TASK_ID" > "out/$HYBRID_TASK_ID.txt"
git add -A && git commit -q -m "$HYBRID_TASK_ID"
echo "done $HYBRID_TASK_ID" >> "$HYBRID_PROGRESS"
"""


def pct(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def git(cwd, *args, env):
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


class Server:
    def __init__(self, binary, repo, env):
        self.p = subprocess.Popen([binary, "-C", repo, "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  env=env)
        self.next_id = 0
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "bench", "version": "0"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, msg):
        self.p.stdin.write((json.dumps(msg) + "\n").encode())
        self.p.stdin.flush()

    def request(self, method, params):
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        while True:
            line = self.p.stdout.readline()
            if not line:
                sys.exit("the server closed its output")
            msg = json.loads(line)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    sys.exit(f"{method} failed: {msg['error']}")
                return msg["result"]

    def tool(self, name, args):
        r = self.request("tools/call", {"name": name, "arguments": args})
        if r.get("isError"):
            sys.exit(f"{name} failed: {r}")
        return r["structuredContent"]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--bin", default=os.path.join(here, "..", "target", "release", "git-hybrid"))
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: build it with `cargo build --release`")

    tmp = tempfile.mkdtemp(prefix="bench-mcp-")
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
        os.makedirs(os.path.join(repo, "out"))
        git(repo, "init", "-q", env=env)
        git(repo, "symbolic-ref", "HEAD", "refs/heads/main", env=env)
        with open(os.path.join(repo, "agent.sh"), "w") as f:
            f.write(AGENT)
        with open(os.path.join(repo, "out", ".keep"), "w") as f:
            f.write("")
        plan = ['[agent]\ncommand = ["builtin:script", "agent.sh"]\n']
        for i in range(a.tasks):
            plan.append(f'[[task]]\nid = "t{i:03}"\nprompt = "write out/t{i:03}.txt"\ntouches = ["out/t{i:03}.txt"]\n')
        with open(os.path.join(repo, "hybrid.toml"), "w") as f:
            f.write("\n".join(plan))
        git(repo, "add", "-A", env=env)
        git(repo, "commit", "-q", "-m", "plan", env=env)
        t0 = time.time()
        subprocess.run([binary, "-C", repo, "dispatch", "-j", "8"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"setup: {a.tasks} tasks dispatched and landed in {time.time() - t0:.1f} s")

        server = Server(binary, repo, env)
        st = server.tool("status", {})
        assert len(st["tasks"]) == a.tasks and all(t["state"] == "landed" for t in st["tasks"]), st["tasks"][:3]
        sides = {k: [] for k in ("mcp status <task>", "mcp status (all)", "mcp task_log",
                                 "spawn status --json <task>", "spawn status --json (all)")}
        for i in range(a.calls):
            task = f"t{i % a.tasks:03}"
            t = time.perf_counter()
            server.tool("status", {"task": task})
            sides["mcp status <task>"].append(time.perf_counter() - t)
            t = time.perf_counter()
            log = server.tool("task_log", {"task": task})
            sides["mcp task_log"].append(time.perf_counter() - t)
            assert "done" in log["text"], log
            t = time.perf_counter()
            subprocess.run([binary, "-C", repo, "--json", "status", task], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            sides["spawn status --json <task>"].append(time.perf_counter() - t)
            if i % 5 == 0:
                t = time.perf_counter()
                server.tool("status", {})
                sides["mcp status (all)"].append(time.perf_counter() - t)
                t = time.perf_counter()
                subprocess.run([binary, "-C", repo, "--json", "status"], env=env, check=True,
                               stdout=subprocess.DEVNULL)
                sides["spawn status --json (all)"].append(time.perf_counter() - t)
        server.close()
        print(f"{'call':<30} {'n':>5} {'p50 ms':>8} {'p95 ms':>8}")
        for name, v in sides.items():
            print(f"{name:<30} {len(v):>5} {pct(v, 50) * 1e3:>8.2f} {pct(v, 95) * 1e3:>8.2f}")
        one = pct(sides["mcp status <task>"], 50) * 1e3
        spawn = pct(sides["spawn status --json <task>"], 50) * 1e3
        print(f"status <task>: MCP p50 {one:.2f} ms vs spawn p50 {spawn:.2f} ms ({spawn / one:.1f}x); "
              f"goal p50 < 2 ms: {'met' if one < 2 else 'missed'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
