#!/usr/bin/env python3
"""Benchmark: `git hybrid label --pairs` against Python's difflib, same definition, one run.

Builds 20,000 diff pairs from real git history: the text files of a real repository (default:
this checkout) seed a synthetic history written with `git fast-import` (each commit edits 1-3
real files with lines drawn from the real corpus), plus, for every commit, a rival "candidate"
commit on the same parent that makes a perturbed version of the same edit. Every diff is
printed by `git log -p`. Pairs are (candidate, final), (other commit, final) and (candidate of
a neighbour, final), and a few pairs of the source repository's own commit diffs.

Then, on the same JSONL file:
  - python3 benches/labels_ref.py (difflib, single-threaded), once,
  - git-hybrid label --pairs --jobs N for N in 1, 2, 4 (best of --repeat runs),
checks that every jaccard/ratio/score agrees within 1e-12, and prints times and speed-ups.

    python3 benches/labels.py [--pairs 20000] [--commits 1500] [--source DIR] [--bin PATH]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ENV = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM='1', LC_ALL='C',
           GIT_AUTHOR_NAME='bench', GIT_AUTHOR_EMAIL='bench@example.com',
           GIT_COMMITTER_NAME='bench', GIT_COMMITTER_EMAIL='bench@example.com')


def git(cwd, *args, input=None):
    return subprocess.run(['git', *args], cwd=cwd, env=ENV, input=input, check=True,
                          stdout=subprocess.PIPE).stdout


def source_files(src):
    """Text files of the source repository: {path: [lines]}."""
    files = {}
    for path in git(src, 'ls-files', '-z').decode().split('\0'):
        if not path:
            continue
        try:
            with open(os.path.join(src, path), encoding='utf-8') as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        if '\0' in text or len(text) > 200_000:
            continue
        files[path] = text.split('\n')
    return files


def block_size(rng):
    """Lines in one edit: heavy-tailed like real commits (mostly small, some whole functions)."""
    r = rng.random()
    if r < 0.60:
        return rng.randint(1, 6)
    if r < 0.85:
        return rng.randint(7, 30)
    if r < 0.97:
        return rng.randint(31, 120)
    return rng.randint(121, 400)


def code_block(rng, files, n):
    """`n` consecutive lines of a real file (real code repeats `}`, blank lines and the like)."""
    lines = files[rng.choice(sorted(files))]
    at = rng.randrange(max(1, len(lines) - n))
    return lines[at:at + n]


def random_edit(rng, files, corpus):
    """An edit script: [(path, [(op, at, count, new_lines)])]."""
    edits = []
    r = rng.random()
    nfiles = 1 if r < 0.5 else 2 if r < 0.8 else rng.randint(3, 5)
    for path in rng.sample(sorted(files), k=min(len(files), nfiles)):
        ops = []
        for _ in range(rng.randint(1, 4)):
            op = rng.choice(['insert', 'delete', 'replace', 'replace'])
            at = rng.random()
            count = min(block_size(rng), 40)
            new = code_block(rng, files, block_size(rng))
            ops.append((op, at, count, new))
        edits.append((path, ops))
    return edits


def perturb(rng, edits, corpus):
    """A rival attempt at the same change: some edits dropped, some lines different, extras."""
    out = []
    for path, ops in edits:
        new_ops = []
        for op, at, count, new in ops:
            r = rng.random()
            if r < 0.15:
                continue
            if r < 0.45:
                new = [line if rng.random() < 0.7 else rng.choice(corpus) for line in new]
            elif r < 0.55:
                at = min(1.0, max(0.0, at + rng.uniform(-0.02, 0.02)))
            new_ops.append((op, at, count, new))
        if rng.random() < 0.3:
            new_ops.append(('insert', rng.random(), 0, [rng.choice(corpus) for _ in range(rng.randint(1, 6))]))
        out.append((path, new_ops))
    return out


def apply(files, edits):
    files = dict(files)
    for path, ops in edits:
        lines = list(files[path])
        for op, at, count, new in ops:
            i = int(at * len(lines))
            if op == 'insert':
                lines[i:i] = new
            elif op == 'delete':
                del lines[i:i + count]
            else:
                lines[i:i + count] = new
        files[path] = lines
    return files


def fast_import_stream(base_files, n_commits, rng, corpus):
    """Main history plus one rival commit per main commit; returns (stream, n_commits)."""
    out = []
    mark = [0]

    def blob(text):
        data = text.encode()
        mark[0] += 1
        out.append(b'blob\nmark :%d\ndata %d\n' % (mark[0], len(data)) + data + b'\n')
        return mark[0]

    def commit(ref, msg, parent, changed):
        mods = [(p, blob('\n'.join(lines))) for p, lines in changed]
        mark[0] += 1
        m = mark[0]
        msg = msg.encode()
        head = b'commit %s\nmark :%d\ncommitter bench <bench@example.com> %d +0000\ndata %d\n%s\n' % (
            ref.encode(), m, 1700000000 + m, len(msg), msg)
        if parent:
            head += b'from :%d\n' % parent
        out.append(head + b''.join(b'M 100644 :%d %s\n' % (b, p.encode()) for p, b in mods) + b'\n')
        return m

    files = dict(base_files)
    parent = commit('refs/heads/main', 'initial', None, sorted(files.items()))
    pairs = []  # (main mark, rival mark)
    for i in range(n_commits):
        edits = random_edit(rng, files, corpus)
        rival = apply(files, perturb(rng, edits, corpus))
        new = apply(files, edits)
        r = commit('refs/rivals/%d' % i, 'rival %d' % i, parent, [(p, rival[p]) for p, _ in edits])
        parent = commit('refs/heads/main', 'commit %d' % i, parent, [(p, new[p]) for p, _ in edits])
        files = new
        pairs.append((parent, r))
    return b''.join(out), pairs


def commit_diffs(repo, shas):
    """{sha: diff text} for commits, printed by git against their first parent."""
    out = git(repo, 'log', '-p', '--no-walk=unsorted', '--format=%x00%H', '--stdin',
              input='\n'.join(shas).encode()).decode('utf-8', 'replace')
    diffs = {}
    for chunk in out.split('\0')[1:]:
        sha, _, diff = chunk.partition('\n')
        diffs[sha.strip()] = diff.lstrip('\n')
    return diffs


def build_pairs(args, work):
    rng = random.Random(args.seed)
    files = source_files(args.source)
    corpus = [line for lines in files.values() for line in lines if line.strip()]
    repo = os.path.join(work, 'history')
    git(work, 'init', '-q', '-b', 'main', repo)
    stream, marks = fast_import_stream(files, args.commits, rng, corpus)
    marks_file = os.path.join(work, 'marks')
    git(repo, 'fast-import', '--quiet', '--export-marks=' + marks_file, input=stream)
    sha_of = {}
    with open(marks_file) as f:
        for line in f:
            m, sha = line.split()
            sha_of[int(m[1:])] = sha
    finals = [sha_of[m] for m, _ in marks]
    rivals = [sha_of[r] for _, r in marks]
    diffs = commit_diffs(repo, finals + rivals)
    finals = [diffs[s] for s in finals]
    rivals = [diffs[s] for s in rivals]
    real = list(commit_diffs(args.source, git(args.source, 'rev-list', '-n', '20', 'HEAD').decode().split()).values())

    pairs = []
    n = len(finals)
    for k in range(args.pairs):
        i = k % n
        kind = (k // n) % 4
        if k < 2 * len(real) and len(real) > 1:
            cand, fin = real[k % len(real)], real[(k + 1) % len(real)]
        elif kind in (0, 1):
            cand, fin = rivals[i], finals[i]
        elif kind == 2:
            cand, fin = finals[rng.randrange(n)], finals[i]
        else:
            cand, fin = rivals[(i + 1) % n], finals[i]
        pairs.append({'id': 'p%d' % k, 'candidate': cand, 'final': fin})
    return pairs


def timed(cmd, stdin_path, out_path):
    """(wall seconds, CPU seconds of the child: user + system, all threads)."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(stdin_path, 'rb') as fin, open(out_path, 'wb') as fout:
        t = time.perf_counter()
        subprocess.run(cmd, stdin=fin, stdout=fout, check=True)
        wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def best_of(n, cmd, stdin_path, out_path):
    runs = [timed(cmd, stdin_path, out_path) for _ in range(n)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def compare(a_path, b_path):
    worst = 0.0
    n = 0
    with open(a_path) as fa, open(b_path) as fb:
        for la, lb in zip(fa, fb):
            a, b = json.loads(la), json.loads(lb)
            assert a['id'] == b['id'], (a['id'], b['id'])
            for k in ('jaccard', 'ratio', 'score'):
                worst = max(worst, abs(a[k] - b[k]))
            n += 1
    return n, worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--pairs', type=int, default=20000)
    ap.add_argument('--commits', type=int, default=1500)
    ap.add_argument('--source', default=ROOT, help='repository whose files and commits seed the history')
    ap.add_argument('--bin', default=os.path.join(ROOT, 'target', 'release', 'git-hybrid'))
    ap.add_argument('--jobs', default='1,2,4')
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--before', metavar='BIN',
                    help='another git-hybrid binary (e.g. a build of the previous commit) run at --jobs 1 in the '
                         'same run, for a before/after ratio from the same machine state')
    ap.add_argument('--write-pairs', metavar='PATH',
                    help='only build the pairs file, write it to PATH and exit (input of examples/json_readers.rs)')
    args = ap.parse_args()
    if args.write_pairs:
        with tempfile.TemporaryDirectory(prefix='labels-bench-') as work:
            with open(args.write_pairs, 'w') as f:
                for p in build_pairs(args, work):
                    f.write(json.dumps(p) + '\n')
        print('%s: %d pairs, %.1f MB' % (args.write_pairs, args.pairs, os.path.getsize(args.write_pairs) / 1e6))
        return
    if args.bin == os.path.join(ROOT, 'target', 'release', 'git-hybrid'):
        subprocess.run(['cargo', 'build', '--release', '--quiet'], cwd=ROOT, check=True)

    with tempfile.TemporaryDirectory(prefix='labels-bench-') as work:
        t = time.perf_counter()
        pairs = build_pairs(args, work)
        pairs_path = os.path.join(work, 'pairs.jsonl')
        with open(pairs_path, 'w') as f:
            for p in pairs:
                f.write(json.dumps(p) + '\n')
        keys = [0, 0]
        sys.path.insert(0, HERE)
        import labels_ref
        for p in pairs[:2000]:
            keys[0] += len(labels_ref.keys(p['candidate'])) + len(labels_ref.keys(p['final']))
            keys[1] += 2
        size = os.path.getsize(pairs_path)
        print('pairs: %d (%.1f MB JSONL, ~%.0f changed lines per diff), built in %.1fs, %d cores'
              % (len(pairs), size / 1e6, keys[0] / keys[1], time.perf_counter() - t, os.cpu_count()))

        with open('/proc/loadavg') if os.path.exists('/proc/loadavg') else open(os.devnull) as f:
            load = f.read().split()[:1]
        print('load average at start: %s (wall times on a busy machine are noisy; CPU times are not)'
              % (load[0] if load else '?'))

        py_out = os.path.join(work, 'python.jsonl')
        py_wall, py_cpu = timed([sys.executable, os.path.join(HERE, 'labels_ref.py')], pairs_path, py_out)
        print('%-34s %8.3fs wall %8.3fs CPU' % ('python difflib (1 thread)', py_wall, py_cpu))

        results = []
        for jobs in [int(j) for j in args.jobs.split(',')]:
            out = os.path.join(work, 'rust-%d.jsonl' % jobs)
            wall, cpu = best_of(args.repeat, [args.bin, 'label', '--pairs', '-', '--jobs', str(jobs)], pairs_path, out)
            n, worst = compare(out, py_out)
            if n != len(pairs) or worst > 1e-12:
                print('MISMATCH: --jobs %d: %d of %d lines compared, max difference %g' % (jobs, n, len(pairs), worst))
                sys.exit(1)
            results.append((jobs, wall, cpu))
            print('%-34s %8.3fs wall %8.3fs CPU  %6.1fx python wall  %6.1fx python CPU'
                  % ('git-hybrid label --jobs %d' % jobs, wall, cpu, py_wall / wall, py_cpu / cpu))
        if args.before:
            out = os.path.join(work, 'before.jsonl')
            wall, cpu = best_of(args.repeat, [args.before, 'label', '--pairs', '-', '--jobs', '1'], pairs_path, out)
            n, worst = compare(out, py_out)
            if n != len(pairs) or worst > 1e-12:
                print('MISMATCH: --before: %d of %d lines compared, max difference %g' % (n, len(pairs), worst))
                sys.exit(1)
            print('%-34s %8.3fs wall %8.3fs CPU  %6.1fx python wall  %6.1fx python CPU'
                  % ('before: label --jobs 1', wall, cpu, py_wall / wall, py_cpu / cpu))
        base = results[0][1]
        print('scaling of --jobs (wall): ' + ', '.join('%d: %.2fx' % (j, base / w) for j, w, _ in results))
        print('all %d labels agree with Python difflib within 1e-12' % len(pairs))

        # Where the speed-up comes from: the same comparison by pair size (changed lines).
        buckets = [('< 50 keys', 0, 50), ('50-499 keys', 50, 500), ('>= 500 keys', 500, 10**9)]
        print('by pair size (single thread):')
        for name, lo, hi in buckets:
            path = os.path.join(work, 'bucket.jsonl')
            count = 0
            with open(path, 'w') as f:
                for p in pairs:
                    n = len(labels_ref.keys(p['candidate'])) + len(labels_ref.keys(p['final']))
                    if lo <= n < hi:
                        f.write(json.dumps(p) + '\n')
                        count += 1
            if not count:
                continue
            pw, pc = timed([sys.executable, os.path.join(HERE, 'labels_ref.py')], path, path + '.py')
            rw, rc = best_of(args.repeat, [args.bin, 'label', '--pairs', '-', '--jobs', '1'], path, path + '.rs')
            _, worst = compare(path + '.rs', path + '.py')
            assert worst <= 1e-12
            print('  %-12s %6d pairs: python %7.3fs CPU, git-hybrid %7.3fs CPU: %6.1fx'
                  % (name, count, pc, rc, pc / rc))


if __name__ == '__main__':
    main()
