#!/usr/bin/env bash
# Language benchmark: evaluate every bench/lang/*.nixlike program with real
# Nix (nix-instantiate) and with mini, best of $RUNS runs each, check both
# print the same result, and print a comparison table.
#
# Usage: bench/lang/run.sh [--record] [PROGRAM...]
#   PROGRAM       program names (e.g. `fib sort`) or paths; default: all
#                 bench/lang/*.nixlike
#   --record      also write the table to bench/lang/last-results.md
#
# Environment:
#   MINI             mini binary (default: $REPO/target/release/mini, built
#                    with `cargo build --release` if missing)
#   RUNS             runs per program and evaluator, best is kept (default 3)
#   NIX_INSTANTIATE  nix-instantiate binary (default: nix-instantiate)
#   TIMEOUT          per-run time limit in seconds (default 600)
#
# Exit status: 0 if every program gave the same output under both
# evaluators, 1 if any MISMATCH or FAILED, 2 on usage/setup errors.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
DEFAULT_MINI="$REPO/target/release/mini"
MINI=${MINI:-$DEFAULT_MINI}
RUNS=${RUNS:-3}
NIX_INSTANTIATE=${NIX_INSTANTIATE:-nix-instantiate}
TIMEOUT=${TIMEOUT:-600}
GNU_TIME=/usr/bin/time
RESULTS_FILE="$BENCH_DIR/last-results.md"

record=0
programs=()
for arg in "$@"; do
    case "$arg" in
        --record) record=1 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) echo "run.sh: unknown option: $arg" >&2; exit 2 ;;
        *)
            if [[ -f "$arg" ]]; then programs+=("$(cd "$(dirname "$arg")" && pwd)/$(basename "$arg")")
            elif [[ -f "$BENCH_DIR/$arg.nixlike" ]]; then programs+=("$BENCH_DIR/$arg.nixlike")
            else echo "run.sh: no such program: $arg" >&2; exit 2
            fi ;;
    esac
done
if [[ ${#programs[@]} -eq 0 ]]; then
    programs=("$BENCH_DIR"/*.nixlike)
fi

if ! [[ "$RUNS" =~ ^[1-9][0-9]*$ ]]; then
    echo "run.sh: RUNS must be a positive integer (got '$RUNS')" >&2; exit 2
fi
if [[ ! -x "$GNU_TIME" ]]; then
    echo "run.sh: $GNU_TIME (GNU time) not found; apt-get install -y time" >&2; exit 2
fi
if ! command -v "$NIX_INSTANTIATE" >/dev/null; then
    echo "run.sh: $NIX_INSTANTIATE not found; apt-get install -y nix-bin" >&2; exit 2
fi
if [[ ! -x "$MINI" ]]; then
    if [[ "$MINI" == "$DEFAULT_MINI" ]]; then
        echo "run.sh: $MINI missing, running cargo build --release" >&2
        if ! (cd "$REPO" && cargo build --release) >&2; then
            echo "run.sh: cargo build --release failed" >&2; exit 2
        fi
    fi
    if [[ ! -x "$MINI" ]]; then
        echo "run.sh: mini binary not found or not executable: $MINI" >&2; exit 2
    fi
fi

# Offline, hermetic evaluation: no search path, and --readonly-mode so Nix
# neither opens the store database for writing nor needs a daemon.
export NIX_PATH=
NIX_CMD=("$NIX_INSTANTIATE" --readonly-mode --option substituters '' --eval --strict)
MINI_CMD=("$MINI" eval --strict)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mini-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

# measure TAG FILE CMD...
# Runs CMD FILE $RUNS times. Sets: best_s (min wall seconds), best_kib (peak
# RSS of that run), ok (1 if every run exited 0), and leaves the stdout of
# the first run in $TMP/TAG.out (stderr of the last failing run in TAG.err).
measure() {
    local tag=$1 file=$2; shift 2
    local i rc s kib
    best_s= best_kib= ok=1
    for ((i = 1; i <= RUNS; i++)); do
        rc=0
        # timeout runs inside time (its %M covers the reaped evaluator);
        # --foreground keeps everything in our process group so ^C works.
        # Wall time comes from bash's microsecond clock (GNU time's %e has
        # only 10 ms resolution); the wrappers cost both peers the same.
        local start=$EPOCHREALTIME
        "$GNU_TIME" -f '%M' -o "$TMP/$tag.time" timeout --foreground "$TIMEOUT" \
            "$@" "$file" >"$TMP/$tag.run.out" 2>"$TMP/$tag.run.err" || rc=$?
        local end=$EPOCHREALTIME
        if [[ $rc -ne 0 ]]; then
            ok=0
            cp "$TMP/$tag.run.err" "$TMP/$tag.err"
            [[ $rc -eq 124 ]] && echo "timed out after ${TIMEOUT}s" >>"$TMP/$tag.err"
            return 0
        fi
        [[ $i -eq 1 ]] && cp "$TMP/$tag.run.out" "$TMP/$tag.out"
        if ! cmp -s "$TMP/$tag.run.out" "$TMP/$tag.out"; then
            ok=0
            echo "output differs between runs" >"$TMP/$tag.err"
            return 0
        fi
        # GNU time may prepend "Command exited ..." lines; format line is last.
        read -r kib < <(tail -n 1 "$TMP/$tag.time")
        s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
        if [[ -z "$best_s" ]] || awk -v a="$s" -v b="$best_s" 'BEGIN { exit !(a < b) }'; then
            best_s=$s best_kib=$kib
        fi
    done
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "inf" }'; }

header="| program | nix s | mini s | time ratio (mini/nix) | speedup (nix/mini) | nix MiB | mini MiB | mem ratio (mini/nix) | check |"
sep="|---|---:|---:|---:|---:|---:|---:|---:|---|"
rows=()
failures=0

echo "nix:  $("$NIX_INSTANTIATE" --version)" >&2
echo "mini: $MINI" >&2
echo "runs: $RUNS (best wall time kept)" >&2

for file in "${programs[@]}"; do
    name=$(basename "$file" .nixlike)
    echo "== $name" >&2

    measure nix "$file" "${NIX_CMD[@]}"
    nix_ok=$ok nix_s=$best_s nix_kib=$best_kib
    measure mini "$file" "${MINI_CMD[@]}"
    mini_ok=$ok mini_s=$best_s mini_kib=$best_kib

    if [[ $nix_ok -eq 1 ]]; then
        nix_s_col=$nix_s nix_mib_col=$(mib "$nix_kib")
        echo "   nix:  ${nix_s}s ${nix_mib_col}MiB  => $(head -c 200 "$TMP/nix.out")" >&2
    else
        nix_s_col=FAILED nix_mib_col=-
        echo "   nix FAILED:" >&2; sed 's/^/     /' "$TMP/nix.err" | tail -n 20 >&2
    fi
    if [[ $mini_ok -eq 1 ]]; then
        mini_s_col=$mini_s mini_mib_col=$(mib "$mini_kib")
        echo "   mini: ${mini_s}s ${mini_mib_col}MiB  => $(head -c 200 "$TMP/mini.out")" >&2
    else
        mini_s_col=FAILED mini_mib_col=-
        echo "   mini FAILED:" >&2; sed 's/^/     /' "$TMP/mini.err" | tail -n 20 >&2
    fi

    speed=- time_ratio=- mem=-
    if [[ $nix_ok -eq 1 && $mini_ok -eq 1 ]]; then
        speed=$(ratio "$nix_s" "$mini_s")
        time_ratio=$(ratio "$mini_s" "$nix_s")
        mem=$(ratio "$mini_kib" "$nix_kib")
        if cmp -s "$TMP/nix.out" "$TMP/mini.out"; then
            check=ok
        else
            check=MISMATCH
            failures=$((failures + 1))
            echo "   MISMATCH: nix printed $(head -c 200 "$TMP/nix.out"), mini printed $(head -c 200 "$TMP/mini.out")" >&2
        fi
    else
        check=FAILED
        failures=$((failures + 1))
    fi
    rows+=("| $name | $nix_s_col | $mini_s_col | $time_ratio | $speed | $nix_mib_col | $mini_mib_col | $mem | $check |")
done

table=$(printf '%s\n' "$header" "$sep" "${rows[@]}")
echo
echo "$table"

if [[ $record -eq 1 ]]; then
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -n 1)" ]]; then rev="$rev (dirty)"; fi
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
    {
        echo "# Language benchmark: last results"
        echo
        echo "Generated by \`bench/lang/run.sh --record\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
        echo
        echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
        echo "- nix: $("$NIX_INSTANTIATE" --version)"
        echo "- mini: \`${MINI#"$REPO"/}\`, commit $rev"
        echo "- best of $RUNS runs (minimum wall time from bash's \$EPOCHREALTIME; peak RSS of that run from GNU time \`%M\`)"
        echo
        echo "$table"
    } >"$RESULTS_FILE"
    echo "recorded in $RESULTS_FILE" >&2
fi

if [[ $failures -gt 0 ]]; then
    echo "$failures program(s) MISMATCH or FAILED" >&2
    exit 1
fi
