#!/usr/bin/env python3
"""Benchmark: create 20 task worktrees with `git-hybrid start` vs `git worktree add`.

Same work on both sides, in one run: a repository of at least 5,000 files (spread over
directories, log-normal sizes around 3 KB like a source tree, packed), copied fresh for each
side in every round; each side creates 20 worktrees one after the other, each from its own
process (`git-hybrid start t<i>` against `git worktree add -b b<i> <path> main`, both from
the repository's main checkout into a sibling folder). The i-th worktree of the two sides is
made back to back, alternating which side goes first, so load from other processes on a
shared machine hits both alike. The environment is hermetic (empty global/system git
config, fixed identity and dates). Every worktree is checked afterwards (listed by git, on
its branch, clean).

Prints per-round totals, then the median total of each side, per-worktree milliseconds and the
ratio git-hybrid/git (goal: <= 1.0). No assertion: this is a measurement, not a test.

Usage: python3 benches/worktrees.py [--files 5000] [--worktrees 20] [--rounds 3] [--no-build]
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "git-hybrid")


def hermetic_env(tmp):
    empty = os.path.join(tmp, "empty.gitconfig")
    open(empty, "w").close()
    home = os.path.join(tmp, "home")
    os.makedirs(home, exist_ok=True)
    # GIT_HYBRID_* (e.g. GIT_HYBRID_CHECKOUT_THREADS) pass through; any other GIT_* is dropped.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k.startswith("GIT_HYBRID_")}
    env.update(
        GIT_CONFIG_GLOBAL=empty,
        GIT_CONFIG_SYSTEM=empty,
        GIT_CONFIG_NOSYSTEM="1",
        HOME=home,
        XDG_CONFIG_HOME=os.path.join(home, ".config"),
        GIT_AUTHOR_NAME="Bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_AUTHOR_DATE="@1767225600 +0000",
        GIT_COMMITTER_NAME="Bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
        GIT_COMMITTER_DATE="@1767225600 +0000",
        NO_COLOR="1",
        LANG="C",
        LC_ALL="C",
    )
    return env


def run(args, cwd, env):
    p = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({p.returncode}):\n{p.stderr.decode(errors='replace')}")
    return p.stdout.decode()


def make_template(path, nfiles, env):
    """A repository with `nfiles` text files in a few hundred folders, source-like sizes."""
    rng = random.Random(42)
    os.makedirs(path)
    run(["git", "init", "-q", "-b", "main"], path, env)
    words = ["let", "value", "return", "fn", "struct", "impl", "self", "match", "Some", "None",
             "config", "error", "result", "path", "index", "tree", "commit", "branch", "merge"]
    total = 0
    for i in range(nfiles):
        top = f"pkg{i % 20:02d}"
        sub = f"mod{(i // 20) % 16:02d}"
        d = os.path.join(path, "src", top, sub)
        os.makedirs(d, exist_ok=True)
        # Log-normal sizes: median ~3 KB, a long tail up to ~100 KB, like source trees.
        size = int(min(100_000, max(80, rng.lognormvariate(8.0, 1.0))))
        lines = []
        n = 0
        while n < size:
            line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + f"; // {i}:{len(lines)}"
            lines.append(line)
            n += len(line) + 1
        text = "\n".join(lines) + "\n"
        total += len(text)
        ext = rng.choice([".rs", ".py", ".ts", ".md", ".json"])
        with open(os.path.join(d, f"file{i:05d}{ext}"), "w") as f:
            f.write(text)
    with open(os.path.join(path, "README.md"), "w") as f:
        f.write("# bench repository\n")
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-q", "-m", "bench tree"], path, env)
    run(["git", "gc", "-q"], path, env)
    return total


def fresh_copy(template, work):
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    repo = os.path.join(work, "repo")
    shutil.copytree(template, repo, symlinks=True)
    os.makedirs(repo + ".hybrid", exist_ok=True)
    return repo


def timed(args, cwd, env):
    t0 = time.perf_counter()
    run(args, cwd, env)
    return time.perf_counter() - t0


def one_round(template, work, n, env, hybrid_first):
    """Each side gets its own fresh copy; the i-th worktree of each side is created back to
    back (alternating which goes first), so load from other processes hits both alike.
    Nothing is deleted until the whole run is over: on ext4, freshly deleted inodes make
    the next file creations slower for minutes (`recently_deleted` in inode allocation), which
    would tax whichever side happened to run next."""
    hrepo = fresh_copy(template, os.path.join(work, "h"))
    grepo = fresh_copy(template, os.path.join(work, "g"))
    subprocess.run(["sync"])
    h = g = 0.0
    for i in range(n):
        hyb_cmd = [BIN, "start", f"t{i}"]
        git_cmd = ["git", "worktree", "add", "-q", "-b", f"b{i}", os.path.join(grepo + ".hybrid", f"b{i}"), "main"]
        if (i % 2 == 0) == hybrid_first:
            h += timed(hyb_cmd, hrepo, env)
            g += timed(git_cmd, grepo, env)
        else:
            g += timed(git_cmd, grepo, env)
            h += timed(hyb_cmd, hrepo, env)
    check(hrepo, n, env, "hybrid/t")
    check(grepo, n, env, "b")
    return h, g


def check(repo, n, env, prefix):
    """Both sides must have produced complete, clean worktrees on the right branches."""
    listing = run(["git", "worktree", "list", "--porcelain"], repo, env)
    count = sum(1 for line in listing.splitlines() if line.startswith("branch refs/heads/" + prefix))
    if count != n:
        sys.exit(f"expected {n} worktrees on {prefix}*, found {count}:\n{listing}")
    short = "t" if prefix.startswith("hybrid") else "b"
    for i in range(n):
        wt = os.path.join(repo + ".hybrid", f"{short}{i}")
        head = run(["git", "symbolic-ref", "HEAD"], wt, env).strip()
        if head != f"refs/heads/{prefix}{i}":
            sys.exit(f"worktree {wt} is on {head}")
        status = run(["git", "status", "--porcelain", "--untracked-files=all"], wt, env)
        if status.strip():
            sys.exit(f"worktree {wt} is not clean:\n{status[:2000]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--worktrees", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-build", action="store_true", help="use the existing target/release binary")
    ap.add_argument("--dir", default=None, help="where to create the repositories (default: the system temp dir)")
    args = ap.parse_args()

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found; build with cargo build --release")

    tmp = tempfile.mkdtemp(prefix="hybrid-bench-wt-", dir=args.dir)
    try:
        env = hermetic_env(tmp)
        template = os.path.join(tmp, "template")
        size = make_template(template, args.files, env)
        git_version = run(["git", "--version"], tmp, env).strip()
        fs = subprocess.run(["df", "--output=fstype", tmp], capture_output=True, text=True).stdout.split()[-1:]
        threads = env.get("GIT_HYBRID_CHECKOUT_THREADS", "auto")
        print(f"repository: {args.files} files, {size / 1e6:.1f} MB of text; {git_version}; "
              f"{os.cpu_count()} CPUs; file system {''.join(fs) or '?'} ({tmp}); checkout threads {threads}; "
              f"{args.worktrees} worktrees per side, {args.rounds} rounds")
        results = {"git-hybrid": [], "git": []}
        for r in range(args.rounds):
            work = os.path.join(tmp, f"round{r + 1}")
            h, g = one_round(template, work, args.worktrees, env, hybrid_first=(r % 2 == 0))
            results["git-hybrid"].append(h)
            results["git"].append(g)
            n = args.worktrees
            print(f"round {r + 1}: git-hybrid {h * 1000:7.0f} ms ({h * 1000 / n:6.1f} ms/worktree)   "
                  f"git {g * 1000:7.0f} ms ({g * 1000 / n:6.1f} ms/worktree)   ratio {h / g:.2f}")
        h = statistics.median(results["git-hybrid"])
        g = statistics.median(results["git"])
        n = args.worktrees
        print()
        print(f"git-hybrid start   : {h * 1000:8.0f} ms for {n} worktrees ({h * 1000 / n:.1f} ms each, median of {args.rounds})")
        print(f"git worktree add   : {g * 1000:8.0f} ms for {n} worktrees ({g * 1000 / n:.1f} ms each, median of {args.rounds})")
        ratios = [a / b for a, b in zip(results["git-hybrid"], results["git"])]
        print(f"ratio git-hybrid/git: {h / g:.2f} (medians; per round: "
              f"{', '.join(f'{x:.2f}' for x in ratios)}; goal <= 1.0)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
