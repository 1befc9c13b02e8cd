#!/usr/bin/env bash
# Debian benchmark: two measurements, each against its floor in the same
# run, in alternating order.
#
#   root   `mini build examples/c-make#root`: assembling the root of the
#          63 packages examples/c-make/debian.lock pins (coreutils, dash, gcc, make,
#          libc6-dev and their closure) from .deb files already in the store
#          (evaluation, unpacking every data.tar.xz, the dpkg database, the
#          alternatives' links, hashing and registering the output), in a
#          fresh store seeded with the .debs beforehand (not timed), against
#          `dpkg -x` of the same 63 files into one directory, one after the
#          other (what dpkg does to unpack, without its database).
#   build  `mini build examples/c-make` with its root already built: the
#          sandbox on Debian's gcc and make, stdenv's phases (make, make
#          check, make install, strip), registration; each round with a new
#          greet.h (a comment with the round's salt), so the program is
#          compiled afresh; against the same make, check and install with
#          the host's make and gcc (the same Debian versions on a Debian 12
#          host) in a fresh copy of the sources.
#
# Usage: bench/debian/run.sh [--record]
#   --record   also write the tables to bench/debian/last-results.md
#
# Environment:
#   MINI            mini binary. Unset: `cargo build --release` is run and
#                   target/release/mini used. Either way it is copied first.
#   ROUNDS          rounds of each measurement (default 5); best and median
#   MINI_DEB_CACHE  the locked .debs (default ~/.cache/mini/debs, filled by
#                   scripts/install-prerequisites)
#   TMPDIR          where the work directory goes (default /tmp; ~2 GB)
#   KEEP=1          keep the work directory
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
ROUNDS=${ROUNDS:-5}
DEBS=${MINI_DEB_CACHE:-$HOME/.cache/mini/debs}
LOCK="$REPO/examples/c-make/debian.lock"
RESULTS_FILE="$BENCH_DIR/last-results.md"

record=0
for arg in "$@"; do
    case "$arg" in
        --record) record=1 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "run.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done
die() { echo "run.sh: $*" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
for tool in dpkg python3 make gcc; do command -v "$tool" >/dev/null || die "$tool is needed"; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mini-bench-debian.XXXXXX")
cleanup() { if [ "${KEEP:-}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

if [ -z "${MINI:-}" ]; then
    (cd "$REPO" && cargo build --release -q)
    MINI="$REPO/target/release/mini"
fi
cp "$MINI" "$WORK/mini"
MINI="$WORK/mini"

# The store names of the locked .debs, as tests/common/mod.rs computes them.
mapfile -t deb_files < <(python3 - "$LOCK" "$DEBS" <<'PY'
import json, re, sys
lock, cache = sys.argv[1], sys.argv[2]
for p in json.load(open(lock))["packages"]:
    version = re.sub(r"^[0-9]+:", "", p["version"])
    name = f'{p["name"]}_{version}_{p["architecture"]}.deb'.replace("~", "_").replace(":", "_")
    print(f"{cache}/{name}")
PY
)
for f in "${deb_files[@]}"; do [ -f "$f" ] || die "$f is missing: run scripts/install-prerequisites"; done
deb_bytes=$(cat "${deb_files[@]}" | wc -c)

seed() { # seed STORE: the .debs into a fresh store
    for f in "${deb_files[@]}"; do "$MINI" --store "$1" store add-fixed "$f" >/dev/null 2>&1; done
}
now() { date +%s.%N; }
# stats "a b c": best and median, in seconds with 3 decimals
stats() { python3 -c 'import sys,statistics as s; v=sorted(map(float,sys.argv[1].split())); print(f"{v[0]:.3f} {s.median(v):.3f}")' "$1"; }

cp -r "$REPO/examples/c-make" "$WORK/c-make"
root_mini=() root_dpkg=() build_mini=() build_host=()
for round in $(seq 1 "$ROUNDS"); do
    # root: mini, then dpkg -x (alternating which goes first)
    store="$WORK/store-$round"
    seed "$store"
    run_mini_root() {
        local t0; t0=$(now)
        "$MINI" --store "$store" build "$WORK/c-make#root" --no-link >/dev/null 2>&1 || { echo "run.sh: mini build #root failed" >&2; exit 1; }
        root_mini+=("$(python3 -c "print($(now) - $t0)")")
    }
    run_dpkg() {
        local dir="$WORK/dpkg-$round" t0
        mkdir "$dir"
        t0=$(now)
        for f in "${deb_files[@]}"; do dpkg -x "$f" "$dir"; done
        root_dpkg+=("$(python3 -c "print($(now) - $t0)")")
        rm -rf "$dir"
    }
    if [ $((round % 2)) = 1 ]; then run_mini_root; run_dpkg; else run_dpkg; run_mini_root; fi

    # build: the program, compiled afresh (a new greet.h), root already built
    salt="$round-$$-$(date +%s%N)"
    printf '/* %s */\n' "$salt" >> "$WORK/c-make/src/greet.h"
    run_mini_build() {
        local t0; t0=$(now)
        "$MINI" --store "$store" build "$WORK/c-make" --no-link >/dev/null 2>&1 || { echo "run.sh: mini build failed" >&2; exit 1; }
        build_mini+=("$(python3 -c "print($(now) - $t0)")")
    }
    run_host_build() {
        local src="$WORK/host-$round" t0
        cp -r "$WORK/c-make/src" "$src"
        t0=$(now)
        (cd "$src" && make -s CC=cc && make -s check && make -s install PREFIX="$WORK/host-out-$round" && strip -S "$WORK/host-out-$round/bin/hello") >/dev/null
        build_host+=("$(python3 -c "print($(now) - $t0)")")
        rm -rf "$src" "$WORK/host-out-$round"
    }
    if [ $((round % 2)) = 1 ]; then run_mini_build; run_host_build; else run_host_build; run_mini_build; fi
    rm -rf "$store"
done

read -r rm_best rm_med <<<"$(stats "${root_mini[*]}")"
read -r rd_best rd_med <<<"$(stats "${root_dpkg[*]}")"
read -r bm_best bm_med <<<"$(stats "${build_mini[*]}")"
read -r bh_best bh_med <<<"$(stats "${build_host[*]}")"
ratio() { python3 -c "print(f'{$1 / $2:.2f}x')"; }

table=$(cat <<EOF
$(date -u +%Y-%m-%d) · $(git -C "$REPO" rev-parse --short HEAD) · ROUNDS=$ROUNDS · work dir on $(df --output=fstype "$WORK" | tail -1) · $(nproc) cores

| measurement | floor best / median s | mini best / median s | mini / floor (best, median) | target |
|---|---:|---:|---:|---|
| root of ${#deb_files[@]} packages ($((deb_bytes / 1048576)) MiB of .debs) vs \`dpkg -x\` | $rd_best / $rd_med | $rm_best / $rm_med | $(ratio "$rm_best" "$rd_best"), $(ratio "$rm_med" "$rd_med") | ≤ 1.2x |
| examples/c-make in the sandbox vs host make | $bh_best / $bh_med | $bm_best / $bm_med | $(ratio "$bm_best" "$bh_best"), $(ratio "$bm_med" "$bh_med") | ≤ 1.3x |
EOF
)
echo "$table"
if [ "$record" = 1 ]; then
    { echo "# Debian benchmark: last figures"; echo; echo "\`bench/debian/run.sh\` (see its header for what is measured)."; echo; echo "$table"; } > "$RESULTS_FILE"
    echo "recorded in $RESULTS_FILE"
fi
