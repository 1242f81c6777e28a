"""Drives `git hybrid mcp` with the official MCP Python SDK (PyPI `mcp`), as tests/mcp.rs asks.

Usage: mcp_client.py <scenario> <git-hybrid binary> <repo>
Prints one JSON line (the facts the Rust test checks against git) and exits 0, or fails with
an assertion. Exit 77 when the `mcp` package is missing (the Rust test decides what that means).
"""

import asyncio
import json
import os
import sys

try:
    from mcp import ClientSession, StdioServerParameters, types
    from mcp.client.stdio import stdio_client
    from pydantic import AnyUrl
except ImportError:  # pragma: no cover
    print("the MCP Python SDK is not installed (python3 -m pip install 'mcp>=1,<2')", file=sys.stderr)
    sys.exit(77)

EXPECTED_TOOLS = {"dispatch", "status", "task_log", "task_diff", "land", "sync", "retry", "cancel", "clean",
                  "labels", "verify"}
# A generous bound so a broken server fails the test instead of hanging it; not a timing assert.
DEADLINE_POLLS = 1200


def params(binary, repo):
    return StdioServerParameters(command=binary, args=["-C", repo, "mcp"], env=dict(os.environ))


async def call(session, name, args):
    r = await session.call_tool(name, args)
    return r.isError, r.structuredContent


async def ok(session, name, args):
    err, out = await call(session, name, args)
    assert not err, f"{name} {args} failed: {out}"
    return out


async def fails(session, name, args, cls, code):
    err, out = await call(session, name, args)
    assert err, f"{name} {args} should fail, got {out}"
    assert out["class"] == cls and out["exit_code"] == code, f"{name} {args}: wrong class: {out}"
    return out


async def wait_landed(session, ids):
    for _ in range(DEADLINE_POLLS):
        st = await ok(session, "status", {})
        states = {t["id"]: t["state"] for t in st["tasks"]}
        if all(states.get(i) == "landed" for i in ids):
            return st
        bad = {i: s for i, s in states.items() if i in ids and s in ("failed", "conflict")}
        assert not bad, f"tasks did not land: {bad}: {st}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"tasks never landed: {st}")


async def full(binary, repo):
    updated = []

    async def on_message(message):
        if isinstance(message, types.ServerNotification) and isinstance(message.root,
                                                                         types.ResourceUpdatedNotification):
            updated.append(str(message.root.params.uri))

    facts = {}
    async with stdio_client(params(binary, repo)) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as session:
            init = await session.initialize()
            assert init.serverInfo.name == "git-hybrid", init.serverInfo
            assert "dispatch" in (init.instructions or ""), init.instructions
            assert init.capabilities.resources and init.capabilities.resources.subscribe, init.capabilities

            tools = (await session.list_tools()).tools
            names = {t.name for t in tools}
            assert EXPECTED_TOOLS <= names, names
            schema = next(t for t in tools if t.name == "dispatch").inputSchema
            assert "tasks" in schema["properties"], schema

            # Bad input, unknown task: errors with their class, nothing changed.
            await fails(session, "status", {"task": "bad..id"}, "bad_input", 2)
            out = await fails(session, "task_log", {"task": "nope"}, "bad_input", 2)
            assert "unknown task" in out["error"], out
            await fails(session, "dispatch", {"tasks": [{"id": "x", "prompt": "p", "agent": ["sh", "-c", "id"]}]},
                        "bad_input", 2)
            await fails(session, "dispatch", {"tasks": [{"id": "y", "prompt": "p", "depends_on": ["nowhere"]}]},
                        "bad_input", 2)
            st = await ok(session, "status", {})
            assert not any(t["id"] in ("x", "y") for t in st["tasks"]), st

            await session.subscribe_resource(AnyUrl("hybrid://task/t3"))

            # Three tasks with the fake agent; t3 waits for t1.
            agent = lambda f, text: ["builtin:script", "agent.sh", f, text]
            d = await ok(session, "dispatch", {"tasks": [
                {"id": "t1", "prompt": "write one", "title": "Write one", "agent": agent("one.txt", "1")},
                {"id": "t2", "prompt": "write two", "agent": agent("two.txt", "2"), "touches": ["two.txt"]},
                {"id": "t3", "prompt": "write three", "agent": agent("three.txt", "3"), "depends_on": ["t1"]},
            ]})
            assert [t["id"] for t in d["tasks"]] == ["t1", "t2", "t3"], d
            assert d["runner"]["pid"] > 0, d
            # The same id again is refused (validated with the tasks already dispatched).
            await fails(session, "dispatch", {"tasks": [{"id": "t1", "prompt": "again", "agent": agent("a", "b")}]},
                        "bad_input", 2)

            st = await wait_landed(session, ["t1", "t2", "t3"])
            facts["merge_shas"] = {t["id"]: t["merge_sha"] for t in st["tasks"] if t["id"] in ("t1", "t2", "t3")}

            # task_log: the tail, then nothing new from next_offset.
            log = await ok(session, "task_log", {"task": "t1"})
            assert log["exists"] and "done t1" in log["text"], log
            again = await ok(session, "task_log", {"task": "t1", "offset": log["next_offset"]})
            assert again["text"] == "" and again["next_offset"] == log["next_offset"], again
            part = await ok(session, "task_log", {"task": "t1", "offset": 0, "max_bytes": 4})
            assert len(part["text"]) == 4 and part["more"], part
            out = await ok(session, "task_log", {"task": "t1", "file": "stdout"})
            assert out["file"] == "stdout.log", out

            # Resources.
            res = await session.read_resource(AnyUrl("hybrid://task/t1"))
            doc = json.loads(res.contents[0].text)
            assert doc["records"][0]["merge_sha"] == facts["merge_shas"]["t1"], doc
            prog = await session.read_resource(AnyUrl("hybrid://task/t1/progress"))
            assert "done t1" in prog.contents[0].text, prog
            listed = {str(r.uri) for r in (await session.list_resources()).resources}
            assert "hybrid://task/t2/progress" in listed, listed

            # Hand landing of tasks started outside: a diff, a landing, a conflict.
            diff = await ok(session, "task_diff", {"task": "manual"})
            assert [f["path"] for f in diff["files"]] == ["shared.txt"] and "+manual" in diff["patch"], diff
            landed = await ok(session, "land", {"tasks": ["manual"]})
            facts["merge_shas"]["manual"] = landed["results"][0]["merge_sha"]
            diff = await ok(session, "task_diff", {"task": "clash"})
            assert diff["conflicts"] == ["shared.txt"], diff
            out = await fails(session, "land", {"tasks": ["clash"]}, "conflict", 3)
            assert out["conflicts"] == ["shared.txt"], out
            await fails(session, "land", {"tasks": ["ghost"]}, "bad_input", 2)

            v = await ok(session, "verify", {"all": True})
            assert v["ok"], v

            # The subscription saw t3 change (its records were written while it ran).
            for _ in range(DEADLINE_POLLS):
                if "hybrid://task/t3" in updated:
                    break
                await asyncio.sleep(0.05)
            assert "hybrid://task/t3" in updated, updated
    print(json.dumps(facts))


async def wait_state(session, task, states):
    for _ in range(DEADLINE_POLLS):
        st = await ok(session, "status", {"task": task})
        if st["tasks"] and st["tasks"][0]["state"] in states:
            return st["tasks"][0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{task} never reached {states}: {st}")


def hold_agent(repo, task):
    """The test agent that waits in its worktree until `<task>.txt` beside the repository says go."""
    return ["builtin:script", "hold.sh", f"{task}.txt", os.path.dirname(repo)]


async def lifecycle(binary, repo):
    """cancel a running agent, retry it with instructions; then leave while another runs."""
    async with stdio_client(params(binary, repo)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            slow = {"id": "slow", "prompt": "hold", "agent": hold_agent(repo, "slow")}
            await ok(session, "dispatch", {"tasks": [slow]})
            queued = await ok(session, "status", {"task": "slow"})
            assert queued["tasks"][0]["state"] in ("queued", "starting", "ready", "running"), queued
            await wait_state(session, "slow", ["running"])
            for _ in range(DEADLINE_POLLS):
                log = await ok(session, "task_log", {"task": "slow"})
                if "waiting" in log["text"]:
                    break
                await asyncio.sleep(0.05)
            await fails(session, "retry", {"task": "slow"}, "conflict", 3)
            c = await ok(session, "cancel", {"task": "slow"})
            assert c["stopped"], c
            failed = await wait_state(session, "slow", ["failed"])
            await fails(session, "cancel", {"task": "slow"}, "bad_input", 2)
            r = await ok(session, "retry", {"task": "slow", "instructions": "FINISH-NOW: commit what you have."})
            assert r["queued"], r
            landed = await wait_state(session, "slow", ["landed"])
            assert landed["runs"] == 2, landed
            await fails(session, "retry", {"task": "slow"}, "bad_input", 2)
            await fails(session, "retry", {"task": "never-dispatched"}, "bad_input", 2)

            # Leave while a task runs: the background dispatcher goes on without the client.
            await ok(session, "dispatch", {"tasks": [{"id": "bg", "prompt": "hold", "agent": hold_agent(repo, "bg")}]})
            await wait_state(session, "bg", ["running"])
    print(json.dumps({"slow_failure": failed["failure"], "slow_merge": landed["merge_sha"]}))


async def midround(binary, repo):
    """A task dispatched while the runner's round runs another joins that round: it lands while the
    first still runs (before, it waited for the whole round to end)."""
    async with stdio_client(params(binary, repo)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            slow = {"id": "slow", "prompt": "hold", "agent": hold_agent(repo, "slow")}
            await ok(session, "dispatch", {"tasks": [slow]})
            await wait_state(session, "slow", ["running"])
            quick = {"id": "quick", "prompt": "FINISH-NOW", "agent": hold_agent(repo, "quick")}
            await ok(session, "dispatch", {"tasks": [quick]})
            # hold.sh keeps `slow` running for 60 s unless released: `quick` must land well before.
            for _ in range(800):
                st = await ok(session, "status", {})
                states = {t["id"]: t["state"] for t in st["tasks"]}
                assert states.get("slow") == "running", f"slow stopped running before quick landed: {st}"
                if states.get("quick") == "landed":
                    break
                assert states.get("quick") not in ("failed", "conflict"), st
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"quick did not land while the round of slow ran: {st}")
            quick = next(t for t in st["tasks"] if t["id"] == "quick")
            open(os.path.join(os.path.dirname(repo), "release-slow"), "w").close()
            slow = await wait_state(session, "slow", ["landed"])
    print(json.dumps({"quick": quick["merge_sha"], "slow": slow["merge_sha"]}))


async def retry_midround(binary, repo):
    """A task retried while the round it failed in still runs another task runs again (the
    retry used to be dropped when that round ended)."""
    base = os.path.dirname(repo)
    async with stdio_client(params(binary, repo)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await ok(session, "dispatch", {"tasks": [
                {"id": "long", "prompt": "hold", "agent": hold_agent(repo, "long")},
                {"id": "bad", "prompt": "first", "agent": ["builtin:script", "picky.sh", "bad.txt"]},
            ]})
            await wait_state(session, "bad", ["failed"])
            running = await ok(session, "status", {"task": "long"})
            assert running["tasks"][0]["state"] == "running", running
            r = await ok(session, "retry", {"task": "bad", "instructions": "FINISH-NOW please"})
            assert r["queued"], r
            open(os.path.join(base, "release-long"), "w").close()
            await wait_state(session, "long", ["landed"])
            landed = await wait_state(session, "bad", ["landed"])
    print(json.dumps({"bad": landed["merge_sha"], "runs": landed["runs"]}))


async def deps(binary, repo):
    """A task whose dependency failed waits (queued) until the dependency is retried and lands."""
    picky = lambda f: ["builtin:script", "picky.sh", f]
    async with stdio_client(params(binary, repo)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await ok(session, "dispatch", {"tasks": [
                {"id": "dep", "prompt": "first", "agent": picky("dep.txt")},
                {"id": "after", "prompt": "FINISH-NOW second", "agent": picky("after.txt"), "depends_on": ["dep"]},
            ]})
            failed = await wait_state(session, "dep", ["failed"])
            assert "exited with code 1" in failed["failure"], failed
            log = await ok(session, "task_log", {"task": "dep", "file": "stderr"})
            assert "no FINISH-NOW" in log["text"], log
            for _ in range(DEADLINE_POLLS):
                st = await ok(session, "status", {})
                if st["dispatcher"] is None:
                    break
                await asyncio.sleep(0.05)
            after = await ok(session, "status", {"task": "after"})
            assert after["tasks"][0]["state"] == "queued" and after["tasks"][0]["waits_for"] == ["dep"], after
            await ok(session, "retry", {"task": "dep", "instructions": "FINISH-NOW please"})
            await wait_state(session, "dep", ["landed"])
            landed = await wait_state(session, "after", ["landed"])
    print(json.dumps({"after": landed["merge_sha"]}))


async def tools_only(binary, repo):
    async with stdio_client(params(binary, repo)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            names = sorted(t.name for t in (await session.list_tools()).tools)
            st = await ok(session, "status", {})
    print(json.dumps({"tools": names, "tasks": len(st["tasks"])}))


if __name__ == "__main__":
    scenario, binary, repo = sys.argv[1:4]
    asyncio.run({"full": full, "lifecycle": lifecycle, "midround": midround,
                 "retry_midround": retry_midround, "deps": deps,
                 "tools": tools_only}[scenario](binary, repo))
