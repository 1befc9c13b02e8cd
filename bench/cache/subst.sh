#!/usr/bin/env bash
# Substitution benchmark: a closure of $PATHS (default 50) store paths of
# $SIZE_MB (default 10) MB of /dev/urandom each, plus one root referring to
# them all, is built once, copied signed to a directory cache, and served by
# `python3 -m http.server` on 127.0.0.1. Then, in the same run, $ROUNDS
# times (default 3) in alternating order:
#   mini  `mini build --substituters http://… --trusted-public-keys … -j $JOBS`
#         into a fresh, empty store: narinfo lookups, signature checks,
#         download, xz decompression, BLAKE3 checks of file and archive,
#         unpacking, fsync and registration
#   peer  `curl -s URL | xz -d > FILE` of the same .nar.xz files, $JOBS at a
#         time (xargs -P): download and decompression only, no checks, no
#         unpacking, no fsync
#
# Usage: bench/cache/subst.sh [--record]
#   --record   also write the table to bench/cache/last-results.md
# Environment: MINI (default target/release/mini, never built here), PATHS,
# SIZE_MB, ROUNDS, JOBS (default 2), KEEP=1 (keep the work directory),
# TMPDIR (where the work directory goes; default /tmp).
# Needs python3, curl and xz. Exit status: 0 on success, 1 if a run failed.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
MINI=${MINI:-$REPO/target/release/mini}
PATHS=${PATHS:-50}
SIZE_MB=${SIZE_MB:-10}
ROUNDS=${ROUNDS:-3}
JOBS=${JOBS:-2}
RECORD=0
[[ ${1:-} == --record ]] && RECORD=1
for tool in python3 curl xz; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing (scripts/install-prerequisites)" >&2; exit 2; }
done
[[ -x $MINI ]] || { echo "error: $MINI is not built (cargo build --release)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mini-bench-cache.XXXXXX")
SERVER=
cleanup() {
    if [[ -n $SERVER ]]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    if [[ ${KEEP:-0} != 1 ]]; then chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"; fi
}
trap cleanup EXIT

# The flake: blob-1..blob-N and a root that refers to them all.
mkdir -p "$WORK/flake"
{
    echo '{ pkgs, ... }: rec {'
    for i in $(seq 1 "$PATHS"); do
        echo "  blob$i = pkgs.runCommand \"blob-$i\" {} \"head -c $((SIZE_MB * 1048576)) /dev/urandom > \$out\";"
    done
    printf '  default = pkgs.runCommand "root" {} "echo'
    for i in $(seq 1 "$PATHS"); do printf ' ${blob%s}' "$i"; done
    echo ' > $out";'
    echo '}'
} > "$WORK/flake/flake.nixlike"

cd "$WORK/flake"
echo "building the closure and copying it to the cache..." >&2
"$MINI" --store "$WORK/origin" build . --no-link -j "$JOBS" >/dev/null 2>&1
"$MINI" key generate bench-1 --out "$WORK/keys" >/dev/null
"$MINI" --store "$WORK/origin" copy --to "file://$WORK/cache" --secret-key "$WORK/keys/bench-1.secret" . 2>/dev/null
KEY=$(cat "$WORK/keys/bench-1.public")
CLOSURE=$("$MINI" --store "$WORK/origin" path-info -rS --json . | python3 -c \
    'import json,sys; a=json.load(sys.stdin); print(len(a), sum(p["narSize"] for p in a))')
read -r NPATHS NARBYTES <<<"$CLOSURE"
XZBYTES=$(cat "$WORK"/cache/nar/*.nar.xz | wc -c)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$PORT" --directory "$WORK/cache" >/dev/null 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/nix-cache-info" >/dev/null && break; sleep 0.1; done
URL=http://127.0.0.1:$PORT

now() { echo "$EPOCHREALTIME"; }
run_mini() {
    chmod -R u+w "$WORK/fresh" 2>/dev/null || true
    rm -rf "$WORK/fresh"
    local t0 t1
    t0=$(now)
    XDG_CONFIG_HOME="$WORK/noconfig" "$MINI" --store "$WORK/fresh" build . --no-link -j "$JOBS" \
        --substituters "$URL" --trusted-public-keys "$KEY" 2>"$WORK/mini.log" || { cat "$WORK/mini.log" >&2; exit 1; }
    t1=$(now)
    if grep -q "building '" "$WORK/mini.log"; then echo "error: mini built instead of substituting" >&2; exit 1; fi
    echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }'
}
run_peer() {
    rm -rf "$WORK/peer" && mkdir -p "$WORK/peer"
    local t0 t1
    t0=$(now)
    (cd "$WORK/cache/nar" && ls) | xargs -P "$JOBS" -I{} sh -c \
        "curl -sf '$URL/nar/{}' | xz -d > '$WORK/peer/{}.nar'" || exit 1
    t1=$(now)
    echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }'
}

declare -a M P
for r in $(seq 1 "$ROUNDS"); do
    if (( r % 2 )); then M+=("$(run_mini)"); P+=("$(run_peer)"); else P+=("$(run_peer)"); M+=("$(run_mini)"); fi
    echo "round $r: mini ${M[-1]} s, curl | xz -d ${P[-1]} s" >&2
done
stats() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { printf "%s %s", a[1], a[int((NR + 1) / 2)] }'; }
read -r MB MM <<<"$(stats "${M[@]}")"
read -r PB PM <<<"$(stats "${P[@]}")"
row() { awk -v m="$2" -v p="$3" -v b="$NARBYTES" -v l="$1" \
    'BEGIN { printf "| %s | %.3f | %.3f | %.2fx | %.0f | %.0f |\n", l, p, m, m / p, b / p / 1e6, b / m / 1e6 }'; }
TABLE=$(
    echo "| $NPATHS paths, $((NARBYTES / 1000000)) MB of archives ($((XZBYTES / 1000000)) MB xz), -j $JOBS | curl \| xz -d s | mini s | time ratio (mini/peer) | peer MB/s | mini MB/s |"
    echo "|---|---:|---:|---:|---:|---:|"
    row "best of $ROUNDS" "$MB" "$PB"
    row "median of $ROUNDS" "$MM" "$PM"
)
echo "$TABLE"
if (( RECORD )); then
    FS=$(df -T "$WORK" | awk 'NR == 2 { print $2 }')
    {
        echo "# Substitution benchmark: last results"
        echo
        echo "Generated by \`bench/cache/subst.sh --record\` on $(date -u '+%Y-%m-%d %H:%M') UTC."
        echo
        echo "- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
        echo "- mini: \`${MINI#"$REPO"/}\`, commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown) (plus uncommitted changes)"
        echo "- cache: \`python3 -m http.server\` on 127.0.0.1 serving a directory filled by \`mini copy\` (xz preset 3); work directory on $FS"
        echo "- mini: a fresh, empty store each round; the peer downloads and decompresses the same .nar.xz files to plain files"
        echo
        echo "$TABLE"
    } > "$BENCH_DIR/last-results.md"
fi
