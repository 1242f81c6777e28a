#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (real binary, real repos).
set -euo pipefail
cd "$(dirname "$0")"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets -- --test-threads "${TEST_THREADS:-4}"
