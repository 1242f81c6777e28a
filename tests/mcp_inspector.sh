#!/usr/bin/env bash
# A second MCP client nobody here wrote: the MCP Inspector's CLI mode lists `git hybrid mcp`'s
# tools and calls `status` on a fresh repository. Needs npx (the package comes from npm).
# Usage: tests/mcp_inspector.sh [path/to/git-hybrid]   (./test.sh runs it after the tests)
set -euo pipefail
bin="$(realpath "${1:-target/debug/git-hybrid}")"
inspector="@modelcontextprotocol/inspector@0.15.0"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
git init -q -b main "$tmp/repo"
git -C "$tmp/repo" -c user.name=ci -c user.email=ci@example.com commit -q --allow-empty -m init
npx -y "$inspector" --cli "$bin" -C "$tmp/repo" mcp --method tools/list > "$tmp/tools.json"
npx -y "$inspector" --cli "$bin" -C "$tmp/repo" mcp --method tools/call --tool-name status > "$tmp/status.json"
python3 - "$tmp/tools.json" "$tmp/status.json" <<'PY'
import json, sys
tools = {t["name"] for t in json.load(open(sys.argv[1]))["tools"]}
want = {"dispatch", "status", "task_log", "task_diff", "land", "sync", "retry", "cancel", "clean", "labels", "verify"}
assert want <= tools, f"the Inspector lists {sorted(tools)}"
status = json.load(open(sys.argv[2]))
assert not status.get("isError") and status["structuredContent"]["tasks"] == [], status
print(f"mcp inspector: ok ({len(tools)} tools listed, status called)")
PY
