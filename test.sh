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
