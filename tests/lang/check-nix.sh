#!/usr/bin/env bash
# Differential oracle check: runs real Nix (nix-instantiate, tested with 2.8)
# over the corpus in this directory and compares against the goldens.
#
#   ./check-nix.sh           verify every case (exit 1 on any mismatch)
#   ./check-nix.sh --regen   rewrite eval/ lazy/ json/ *.exp from nix's stdout
#                            (fail/*.err phrases are hand-picked and never rewritten;
#                             they are still verified)
#
# Layout (see README.md):
#   eval/NNN-topic.nixlike + .exp   nix-instantiate --eval --strict
#   lazy/NNN-topic.nixlike + .exp   nix-instantiate --eval
#   json/NNN-topic.nixlike + .exp   nix-instantiate --eval --strict --json
#   fail/NNN-topic.nixlike + .err   must exit 1; stderr must contain the .err line
set -euo pipefail

self="${BASH_SOURCE[0]}"
if [[ "$self" == */* ]]; then cd "${self%/*}"; fi

regen=0
case "${1:-}" in
  "") ;;
  --regen) regen=1 ;;
  -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--regen]" >&2; exit 2 ;;
esac

if ! command -v nix-instantiate >/dev/null 2>&1; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "check-nix.sh: nix-instantiate not found (required when CI=true; install nix, e.g. apt-get install nix-bin)" >&2
    exit 1
  fi
  echo "check-nix.sh: note: nix-instantiate not found; skipping the Nix oracle check."
  exit 0
fi

# Hermetic, offline environment: no search path, no user config, and a dummy
# store so that nothing touches /nix/var (works as root and as a plain user).
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/home"
export HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/home/.config" XDG_CACHE_HOME="$tmp/home/.cache"
export NIX_PATH=""
unset NIX_CONFIG NIX_REMOTE || true
nix_opts=(--store dummy:// --option sandbox false)

passed=0
failed=0
failures=()

fail_case() {
  failed=$((failed + 1))
  failures+=("$1")
  echo "FAIL $1: $2"
}

# run_golden <dir> <flags...>
run_golden() {
  local dir="$1"; shift
  local src name exp out
  for src in "$dir"/*.nixlike; do
    [[ -e "$src" ]] || continue
    name="${src%.nixlike}"
    exp="$name.exp"
    out="$tmp/out"
    if ! (cd "$dir" && nix-instantiate "${nix_opts[@]}" "$@" "$(basename "$src")") >"$out" 2>"$tmp/err"; then
      fail_case "$src" "nix-instantiate exited non-zero: $(head -n 3 "$tmp/err" | tr '\n' ' ')"
      continue
    fi
    if [[ $regen -eq 1 ]]; then
      if [[ ! -f "$exp" ]] || ! cmp -s "$out" "$exp"; then
        cp "$out" "$exp"
        echo "regen $exp"
      fi
      passed=$((passed + 1))
    elif [[ ! -f "$exp" ]]; then
      fail_case "$src" "missing $exp"
    elif cmp -s "$out" "$exp"; then
      passed=$((passed + 1))
    else
      fail_case "$src" "stdout differs from $exp"
      diff -u "$exp" "$out" | head -n 20 || true
    fi
  done
}

run_golden eval --eval --strict
run_golden lazy --eval
run_golden json --eval --strict --json

for src in fail/*.nixlike; do
  [[ -e "$src" ]] || continue
  errf="${src%.nixlike}.err"
  if [[ ! -f "$errf" ]]; then
    fail_case "$src" "missing $errf"
    continue
  fi
  phrase="$(head -n 1 "$errf")"
  rc=0
  (cd fail && nix-instantiate "${nix_opts[@]}" --eval --strict "$(basename "$src")") >/dev/null 2>"$tmp/err" || rc=$?
  if [[ $rc -ne 1 ]]; then
    fail_case "$src" "expected exit code 1, got $rc"
  elif [[ -z "$phrase" ]] || ! grep -qF -- "$phrase" "$tmp/err"; then
    fail_case "$src" "stderr lacks phrase: $phrase"
    head -n 5 "$tmp/err"
  else
    passed=$((passed + 1))
  fi
done

echo "$passed passed, $failed failed"
if [[ $failed -ne 0 ]]; then
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
