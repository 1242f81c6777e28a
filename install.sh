#!/usr/bin/env bash
# install.sh: build git-hybrid and install the binary, the hook entry points in hooks/ and the
# man pages (so that `git hybrid --help` and `git help hybrid` work).
#
#   ./install.sh            install into $PREFIX/bin and $PREFIX/share/man/man1 (PREFIX set)
#                           or ~/.cargo/bin and ~/.cargo/share/man/man1
#   ./install.sh --demo     install, then run `git hybrid demo` on a fresh sample repository
#   ./install.sh --zlib-ng  build with zlib-ng instead of the system zlib (faster; needs cmake)
#
# Idempotent: running it again replaces the installed files with the freshly built ones.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
run_demo=0
features=()
for arg in "$@"; do
  case "$arg" in
    --demo) run_demo=1 ;;
    --zlib-ng) features=(--features zlib-ng) ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "install.sh: cargo is not on PATH; install Rust from https://rustup.rs first" >&2
  exit 1
fi
if ! command -v git >/dev/null 2>&1; then
  echo "install.sh: git is not on PATH; git-hybrid needs git" >&2
  exit 1
fi

# man finds pages in ../share/man of every folder on PATH, so they go beside the binary.
if [[ -n "${PREFIX:-}" ]]; then
  bindir="$PREFIX/bin"
  mandir="$PREFIX/share/man/man1"
else
  bindir="${CARGO_HOME:-$HOME/.cargo}/bin"
  mandir="${CARGO_HOME:-$HOME/.cargo}/share/man/man1"
fi

echo "install.sh: building (cargo build --release --locked ${features[*]:-})..." >&2
if ! cargo build --release --locked ${features[@]+"${features[@]}"} --manifest-path "$here/Cargo.toml" >&2; then
  echo "install.sh: the build failed; see cargo's messages above" >&2
  exit 1
fi
target_dir="${CARGO_TARGET_DIR:-$here/target}"

mkdir -p "$bindir" || { echo "install.sh: cannot create $bindir" >&2; exit 1; }
# Copy to a temporary name then rename, so a running git-hybrid is never overwritten in place.
install_file() {
  local src="$1" dest="$2"
  cp "$src" "$dest.tmp.$$" && chmod 755 "$dest.tmp.$$" && mv -f "$dest.tmp.$$" "$dest" || {
    echo "install.sh: cannot install $dest" >&2; rm -f "$dest.tmp.$$"; exit 1; }
}
install_file "$target_dir/release/git-hybrid" "$bindir/git-hybrid"
for hook in "$here"/hooks/*; do
  [[ -f "$hook" ]] || continue
  name="$(basename "$hook")"
  case "$name" in *.md) continue ;; esac
  install_file "$hook" "$bindir/git-hybrid-hook-$name"
done
# The pages are generated from the command-line definitions by the binary just installed.
if ! "$bindir/git-hybrid" __man "$mandir" >/dev/null; then
  echo "install.sh: cannot write the man pages into $mandir" >&2
  exit 1
fi
echo "install.sh: installed git-hybrid and its hook entry points into $bindir, its man pages into $mandir" >&2
case ":$PATH:" in
  *":$bindir:"*) ;;
  *) echo "install.sh: note: $bindir is not on PATH; add it so that \`git hybrid\` works" >&2 ;;
esac

if [[ "$run_demo" == 1 ]]; then
  demo_dir="$(mktemp -d "${TMPDIR:-/tmp}/git-hybrid-demo.XXXXXX")"
  echo "install.sh: running the demo in $demo_dir" >&2
  exec "$bindir/git-hybrid" demo "$demo_dir/demo"
fi
