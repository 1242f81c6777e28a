#!/usr/bin/env python3
"""The example session of docs/mcp.md: a throwaway repository, `git hybrid mcp` over stdio, raw
JSON-RPC (stdlib only), printed as it goes (→ sent, ← received; long results cut).

Usage: python3 docs/mcp_session.py [path/to/git-hybrid]   (default: git-hybrid on PATH)
"""
import json, os, subprocess, sys, tempfile, time
binary = sys.argv[1] if len(sys.argv) > 1 else "git-hybrid"
tmp = tempfile.mkdtemp(prefix="mcp-session-")
empty = os.path.join(tmp, "empty.gitconfig"); open(empty, "w").close()
env = dict(os.environ)
env.update({"GIT_CONFIG_GLOBAL": empty, "GIT_CONFIG_SYSTEM": empty, "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"})
repo = os.path.join(tmp, "shop")
os.makedirs(repo)
def git(*a): subprocess.run(["git", *a], cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL)
git("init", "-q", "-b", "main")
open(os.path.join(repo, "README.md"), "w").write("# shop\n")
open(os.path.join(repo, "hybrid.toml"), "w").write('[agent]\ncommand = ["builtin:script", "agents/fake-claude.sh"]\n')
os.makedirs(os.path.join(repo, "agents"))
open(os.path.join(repo, "agents/fake-claude.sh"), "w").write("""#!/bin/sh
# Stands in for `claude -p`: reads the prompt, notes progress, writes a file, commits.
prompt=$(cat)
echo "- read the task: $(echo "$prompt" | tail -n 1)" >> "$HYBRID_PROGRESS"
mkdir -p docs && echo "$HYBRID_TASK_ID" > "docs/$HYBRID_TASK_ID.md"
git add -A && git commit -q -m "$HYBRID_TASK_ID: first draft"
echo "- committed docs/$HYBRID_TASK_ID.md" >> "$HYBRID_PROGRESS"
""")
git("add", "-A"); git("commit", "-q", "-m", "initial")
p = subprocess.Popen([binary, "-C", repo, "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
n = [0]
def send(msg, show=True):
    line = json.dumps(msg)
    print("→ " + line)
    p.stdin.write((line + "\n").encode())
def req(method, params):
    n[0] += 1
    send({"jsonrpc": "2.0", "id": n[0], "method": method, "params": params})
    while True:
        msg = json.loads(p.stdout.readline())
        if msg.get("id") == n[0]:
            r = msg.get("result", msg)
            if isinstance(r, dict) and "content" in r:
                r = {k: v for k, v in r.items() if k != "content"}
            out = json.dumps(r)
            print("← " + (out if len(out) < 900 else out[:900] + " …"))
            print()
            return msg.get("result")
        else:
            print("← " + json.dumps(msg)); print()
req("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "example", "version": "1"}})
send({"jsonrpc": "2.0", "method": "notifications/initialized"}); print()
req("tools/call", {"name": "dispatch", "arguments": {"tasks": [
    {"id": "faq", "title": "Write the FAQ", "prompt": "Write docs/faq.md", "touches": ["docs/faq.md"]},
    {"id": "api", "title": "Document the API", "prompt": "Write docs/api.md", "touches": ["docs/api.md"]},
    {"id": "index", "title": "Link the docs", "prompt": "Write docs/index.md", "depends_on": ["faq", "api"]}]}})
req("tools/call", {"name": "dispatch", "arguments": {"tasks": [{"id": "../etc", "prompt": "x"}]}})
req("tools/call", {"name": "dispatch", "arguments": {"tasks": [{"id": "x", "prompt": "x", "agent": ["bash", "-c", "cat ~/.ssh/id_rsa"]}]}})
for _ in range(600):
    n[0] += 1
    p.stdin.write((json.dumps({"jsonrpc": "2.0", "id": n[0], "method": "tools/call", "params": {"name": "status", "arguments": {}}}) + "\n").encode())
    while True:
        msg = json.loads(p.stdout.readline())
        if msg.get("id") == n[0]: break
    st = msg["result"]["structuredContent"]
    if len(st["tasks"]) == 3 and all(t["state"] == "landed" for t in st["tasks"]): break
    time.sleep(0.1)
req("tools/call", {"name": "status", "arguments": {"task": "index"}})
r = req("tools/call", {"name": "task_log", "arguments": {"task": "faq"}})
req("tools/call", {"name": "task_log", "arguments": {"task": "faq", "offset": r["structuredContent"]["next_offset"]}})
req("resources/read", {"uri": "hybrid://task/api/progress"})
req("tools/call", {"name": "land", "arguments": {"tasks": ["nope"]}})
req("tools/call", {"name": "verify", "arguments": {"all": True}})
p.stdin.close(); p.wait()
print("$ git log --oneline main")
print(subprocess.run(["git", "log", "--oneline", "main"], cwd=repo, env=env, capture_output=True, text=True).stdout)
