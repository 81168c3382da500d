#!/usr/bin/env bash
# The cold path, on this machine: run .ci/run in a temporary clone of HEAD with every
# user-level cache pointed at empty temporary directories (Go module and build caches,
# the toolchain, pip's cache, XDG_CACHE_HOME; the clone has no venv), so a step that only
# works because an earlier build left something behind fails here as on a new machine.
# System packages (apt) are machine-wide and stay as they are.
#
# Usage: tools/fresh-check.sh        (make fresh-check)
#   FRESH_CHECK_DIR=DIR  use DIR (must be empty or absent) instead of a new temp dir
#   FRESH_CHECK_KEEP=1   keep the directory afterwards (its caches can be reused by hand)
set -euo pipefail
root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
work="${FRESH_CHECK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/tradepulse-fresh.XXXXXX")}"
mkdir -p "$work"
if [ -n "$(ls -A "$work")" ]; then
  echo "fresh-check: $work is not empty" >&2; exit 2
fi
cleanup() { [ "${FRESH_CHECK_KEEP:-0}" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
  echo "fresh-check: note: uncommitted changes are not part of the check (it clones HEAD)" >&2
fi
git clone -q "$root" "$work/repo"
cache="$work/cache"
mkdir -p "$cache"
export GOMODCACHE="$cache/go-mod" GOCACHE="$cache/go-build" GOPATH="$cache/go-path"
export TRADEPULSE_TOOLCHAIN_DIR="$cache/toolchain" PIP_CACHE_DIR="$cache/pip"
export XDG_CACHE_HOME="$cache/xdg"
unset PULUMI_HOME VIRTUAL_ENV
# Drop any toolchain or venv directory a sourced env.sh / activate put on PATH.
PATH="$(tr ':' '\n' <<<"$PATH" | grep -v -e '/tradepulse-vault/toolchain/bin$' -e '/\.venv/bin$' |
  paste -sd: -)"
echo "fresh-check: $(git -C "$root" rev-parse --short HEAD) in $work/repo, caches in $cache" >&2
start=$(date +%s)
status=0
(cd "$work/repo" && bash .ci/run) || status=$?
echo "fresh-check: .ci/run exited $status after $(( $(date +%s) - start )) s (cold caches)" >&2
exit "$status"
