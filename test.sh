#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (real binary, real repos).
# Tests build with the `failpoints` feature (named steps where the crash tests stop the binary,
# src/failpoint.rs); the lint pass without it checks what release builds compile.
set -euo pipefail
cd "$(dirname "$0")"
cargo fmt --all -- --check
cargo clippy --locked --lib --bins -- -D warnings
cargo clippy --locked --all-targets --features failpoints -- -D warnings
cargo test --locked --all-targets --features failpoints -- --test-threads "${TEST_THREADS:-4}"

# A second MCP client nobody here wrote: the MCP Inspector's CLI (from npm) against the binary the
# tests just built. CI (CI=true) must have npx; elsewhere a missing npx is said loudly.
if command -v npx >/dev/null; then
  bash tests/mcp_inspector.sh target/debug/git-hybrid
elif [ -n "${CI:-}" ]; then
  echo "test.sh: npx is missing, the MCP Inspector check cannot run" >&2
  exit 1
else
  echo "test.sh: SKIPPED the MCP Inspector check (no npx on this machine)" >&2
fi

# The optional zlib-ng build (feature `zlib-ng`, needs cmake): the landing and crash tests again
# with libgit2 and flate2 on zlib-ng. CI (CI=true) must have cmake; elsewhere a missing one is said.
if command -v cmake >/dev/null; then
  cargo test --locked --features failpoints,zlib-ng --test land --test crash -- --test-threads "${TEST_THREADS:-4}"
elif [ -n "${CI:-}" ]; then
  echo "test.sh: cmake is missing, the zlib-ng build cannot be tested" >&2
  exit 1
else
  echo "test.sh: SKIPPED the zlib-ng build's tests (no cmake on this machine)" >&2
fi
