#!/usr/bin/env python3
"""Reference implementation of git-hybrid's diff-similarity labels, in plain Python.

The same definition as src/labels (parsing rule, Jaccard, difflib ratio with autojunk, score),
used by the parity tests (tests/labels.rs) and the benchmark (benches/labels.py).

    python3 benches/labels_ref.py < pairs.jsonl > labels.jsonl

reads {"id","candidate","final"} lines and writes {"id","jaccard","ratio","score"} lines.
"""
import difflib
import json
import re
import sys

HUNK = re.compile(r'@@ -([0-9]+)(?:,([0-9]+))? \+([0-9]+)(?:,([0-9]+))? @@')


def _path(rest):
    p = rest.split('\t', 1)[0]
    if p.startswith('a/') or p.startswith('b/'):
        p = p[2:]
    return p


def keys(diff):
    """The changed-line keys `<path>\\t<line>` of a unified diff, in order."""
    out = []
    old = new = ''
    left_old = left_new = 0
    for line in diff.split('\n'):
        if line.endswith('\r'):
            line = line[:-1]
        if left_old > 0 or left_new > 0:
            c = line[:1]
            if c == '' or c == ' ':
                left_old = max(left_old - 1, 0)
                left_new = max(left_new - 1, 0)
                continue
            if c == '-' or c == '+':
                if c == '-':
                    left_old = max(left_old - 1, 0)
                else:
                    left_new = max(left_new - 1, 0)
                path = old if new == '/dev/null' else new
                out.append(path + '\t' + line)
                continue
            if c == '\\':
                continue
            # any other line ends the hunk early and is read as a line outside hunks
            left_old = left_new = 0
        m = HUNK.match(line)
        if m:
            left_old = int(m.group(2)) if m.group(2) is not None else 1
            left_new = int(m.group(4)) if m.group(4) is not None else 1
        elif line.startswith('--- '):
            old = _path(line[4:])
        elif line.startswith('+++ '):
            new = _path(line[4:])
    return out


def labels(candidate, final):
    a, b = keys(candidate), keys(final)
    sa, sb = set(a), set(b)
    union = sa | sb
    jaccard = len(sa & sb) / len(union) if union else 1.0
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    return jaccard, ratio, (jaccard + ratio) / 2


def main():
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        rec = json.loads(line)
        j, r, s = labels(rec['candidate'], rec['final'])
        out.write(json.dumps({'id': rec['id'], 'jaccard': j, 'ratio': r, 'score': s}) + '\n')


if __name__ == '__main__':
    main()
