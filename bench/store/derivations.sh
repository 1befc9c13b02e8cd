#!/usr/bin/env bash
# 30 000 trivial derivations, mini against Nix 2.8 in the same run:
#   eval:        `mini eval --strict` vs `nix-instantiate --eval --strict`
#                forcing every drvPath (paths computed, nothing written);
#   instantiate: `mini instantiate` vs `nix-instantiate`, each writing all
#                30 000 .drv files into a fresh store of its own.
# Best of $RUNS (default 3). Target: mini at least 2x faster.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
MINI=${MINI:-$REPO/target/release/mini}
RUNS=${RUNS:-3}
FILE=$REPO/bench/store/derivations.nixlike
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mini-bench-drv.XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
[ -x "$MINI" ] || (cd "$REPO" && cargo build --release >&2)
FORCE="let ds = import $FILE; in builtins.length (builtins.filter (d: d.drvPath != \"\") ds)"

# time_run TAG CMD...: prints "<seconds> <peak KiB>" and keeps stdout in $WORK/TAG.out
time_run() {
    local tag=$1; shift
    local start=$EPOCHREALTIME
    /usr/bin/time -f '%M' -o "$WORK/time" "$@" > "$WORK/$tag.out" 2> "$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
    local end=$EPOCHREALTIME
    echo "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }') $(tail -n 1 "$WORK/time")"
}

min() { sort -g -k1,1 | head -n 1; }

declare -A results
for ((i = 1; i <= RUNS; i++)); do
    results[nix_eval]+=$(time_run nix-eval nix-instantiate --store "$WORK/nix-e$i" --eval --strict --expr "$FORCE")$'\n'
    results[mini_eval]+=$(time_run mini-eval "$MINI" --store "$WORK/mini-e$i" eval --strict --expr "$FORCE")$'\n'
    cmp -s "$WORK/nix-eval.out" "$WORK/mini-eval.out" || { echo "MISMATCH in eval" >&2; exit 1; }
    results[nix_inst]+=$(time_run nix-inst nix-instantiate --store "$WORK/nix-i$i" "$FILE")$'\n'
    results[mini_inst]+=$(time_run mini-inst "$MINI" --store "$WORK/mini-i$i" instantiate "$FILE")$'\n'
    [[ $(wc -l < "$WORK/nix-inst.out") == $(wc -l < "$WORK/mini-inst.out") ]] || { echo "MISMATCH in instantiate" >&2; exit 1; }
    chmod -R u+w "$WORK"/mini-* 2>/dev/null; rm -rf "$WORK"/nix-* "$WORK"/mini-*
done

echo "| 30 000 derivations | nix s | mini s | time ratio (mini/nix) | speedup (nix/mini) | nix MiB | mini MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for mode in eval inst; do
    read -r ns nk <<< "$(printf '%s' "${results[nix_$mode]}" | min)"
    read -r ms mk <<< "$(printf '%s' "${results[mini_$mode]}" | min)"
    label=$([[ $mode == eval ]] && echo "eval (compute drvPaths)" || echo "instantiate (write .drv files)")
    awk -v l="$label" -v ns="$ns" -v ms="$ms" -v nk="$nk" -v mk="$mk" \
        'BEGIN { printf "| %s | %.3f | %.3f | %.2fx | %.2fx | %.1f | %.1f |\n", l, ns, ms, ms / ns, ns / ms, nk / 1024, mk / 1024 }'
done
