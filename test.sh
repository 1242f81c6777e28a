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
