#!/usr/bin/env bash
# Remote-build benchmark (issue 19): mini's REAPI client and workers through
# a private BuildGrid, against local builds of the same DAG in the same run.
#
# The DAG: LEAVES leaves, LEAVES mids (mid i cats leaf i and leaf i+1,
# the last one leaf 0) and one top that cats every mid; 2 x LEAVES + 1
# derivations (201 by default), each a busybox `sh -c` writing a line or
# two into $out, each with an env var `salt` that changes per build, so
# neither a store nor the action cache has anything of it.
#
#   overhead  per round and per remote -j (REMOTE_JOBS), in alternating
#             order: `mini build --remote grpc://… -j J` into a fresh client
#             store through BuildGrid and WORKERS `mini worker`s (each -j 1,
#             a store of its own), and `mini build -j LOCAL_JOBS` of the
#             same salt into a fresh store. Overhead per action =
#             (remote − local) / derivations.
#   cached    a second client: a fresh store builds the round's DAG (of
#             CACHED_JOBS) again with --remote, every action from the
#             action cache; against the local no-op rebuild (the same
#             command in the local store that built it) and against a
#             fresh store substituting all of the DAG's outputs from a
#             file:// binary cache (`mini build --substituters`), which is
#             the no-op plus a local download of the same paths.
#   one leaf  leaf 0's script changes; the client store that built the DAG
#             with --remote builds it again: blobs and bytes uploaded and
#             actions executed (the `remote: …` line), against the first
#             full build's; and the same change built locally.
#   time      the CPU time BuildGrid, PostgreSQL, the workers and the
#             client use per remote build; from the workers' logs (each
#             line timestamped as it is written), each action's build and
#             the gap before a worker's next one; and SINGLE_RUNS builds of
#             a one-derivation flake with --remote (a new salt each): where
#             the client's wall time goes.
#
# Usage: bench/remote/run.sh [--record]
#   --record   also write the tables to bench/remote/last-results.md
#
# Environment:
#   MINI         mini binary (default target/release/mini; copied, never built)
#   ROUNDS       rounds (default 3); best and median over them
#   REMOTE_JOBS  the remote -j values tried (default "4 8 16 32")
#   CACHED_JOBS  the -j of the cached client and the one-leaf build (default 8)
#   LOCAL_JOBS   the local build's -j (default 2)
#   LEAVES       leaves (default 100; the DAG has 2 x LEAVES + 1 derivations)
#   WORKERS      mini workers (default 2)
#   NOOP_RUNS    no-op rebuilds per round (default 3)
#   SINGLE_RUNS  one-derivation remote builds (default 7)
#   BUILD_TIMEOUT  seconds a build may take before the run fails (default 300)
#   PORT         BuildGrid's port on 127.0.0.1 (default: a free one)
#   REMOTE_UP    the script that starts it all (default scripts/remote-up;
#                a variant with another server.yml, for experiments)
#   THREAD_POOL  BuildGrid's thread-pool-size (its limit of concurrent
#                RPCs) put into a copy of REMOTE_UP's server.yml when that
#                sets none (default 64; 0 runs REMOTE_UP unchanged)
#   TMPDIR       where the work directory goes (default /tmp)
#   KEEP=1       keep the work directory (BuildGrid's logs and CAS, stores)
#
# BuildGrid, its PostgreSQL and the workers are started by
# scripts/remote-up (with the copied mini first on PATH) and stopped at the
# end, also on Ctrl-C. Exit status 1 if a build fails, times out or gives a
# wrong result, 2 on setup errors; derivations built locally after a remote
# failure are reported as anomalies, and missed targets do not change it.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
MINI=${MINI:-$REPO/target/release/mini}
ROUNDS=${ROUNDS:-3}
REMOTE_JOBS=${REMOTE_JOBS:-"4 8 16 32"}
CACHED_JOBS=${CACHED_JOBS:-8}
LOCAL_JOBS=${LOCAL_JOBS:-2}
LEAVES=${LEAVES:-100}
WORKERS=${WORKERS:-2}
NOOP_RUNS=${NOOP_RUNS:-3}
SINGLE_RUNS=${SINGLE_RUNS:-7}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-300}
REMOTE_UP=${REMOTE_UP:-$REPO/scripts/remote-up}
THREAD_POOL=${THREAD_POOL:-64}
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
fail() { echo "run.sh: $*" >&2; exit 1; }
[[ $THREAD_POOL =~ ^[0-9]+$ ]] || die "THREAD_POOL must be a number (got '$THREAD_POOL')"
for n in "$BUILD_TIMEOUT" "$ROUNDS" "$CACHED_JOBS" "$LOCAL_JOBS" "$LEAVES" "$WORKERS" "$NOOP_RUNS" "$SINGLE_RUNS" $REMOTE_JOBS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "ROUNDS, *_JOBS, LEAVES, WORKERS and *_RUNS must be positive integers (got '$n')"
done
[[ " $REMOTE_JOBS " == *" $CACHED_JOBS "* ]] || die "CACHED_JOBS ($CACHED_JOBS) must be one of REMOTE_JOBS ($REMOTE_JOBS)"
[[ -x $REMOTE_UP ]] || die "no $REMOTE_UP"
[[ -x $MINI ]] || die "no mini at $MINI: cargo build --release, or set MINI"
for tool in python3 tail awk; do command -v "$tool" >/dev/null || die "$tool is needed"; done
DRVS=$((2 * LEAVES + 1))

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mini-bench-remote.XXXXXX")
# PostgreSQL runs as nobody when this runs as root: it must enter $WORK.
chmod 755 "$WORK"
mkdir -p "$WORK/bin" "$WORK/src" "$WORK/stores" "$WORK/logs" "$WORK/noconfig"
cp "$MINI" "$WORK/bin/mini"
MINI_SRC=$MINI
MINI="$WORK/bin/mini"
# No config file's "remote" reaches any build here.
export XDG_CONFIG_HOME="$WORK/noconfig"

grid_pid="" tail_pids=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${tail_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -n $grid_pid ]]; then
        kill -TERM "$grid_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$grid_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$grid_pid" 2>/dev/null || true
        wait "$grid_pid" 2>/dev/null || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "run.sh: kept $WORK" >&2
    else
        chmod -R u+w "$WORK" 2>/dev/null || true
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

# --- BuildGrid, PostgreSQL and the workers, by scripts/remote-up ----------
PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
URL="grpc://127.0.0.1:$PORT"
GRID="$WORK/grid"
echo "starting BuildGrid on 127.0.0.1:$PORT with $WORKERS workers (${REMOTE_UP#"$REPO"/}, logs in $GRID)..." >&2
# BuildGrid serves at most thread-pool-size RPCs at once (default 5 x the
# CPUs, 10 here) and refuses more with RESOURCE_EXHAUSTED; every action in
# flight holds an Execute stream and every idle worker a long poll, so
# remote-up's server.yml gets a bigger pool unless it sets one.
if [[ $THREAD_POOL -gt 0 ]] && ! grep -q '^thread-pool-size:' "$REMOTE_UP" && grep -q '^server:$' "$REMOTE_UP"; then
    sed "s/^server:\$/thread-pool-size: $THREAD_POOL\nserver:/" "$REMOTE_UP" > "$WORK/bin/remote-up"
    chmod +x "$WORK/bin/remote-up"
    REMOTE_UP_RUN="$WORK/bin/remote-up"
    echo "BuildGrid's thread-pool-size: $THREAD_POOL (added to a copy of ${REMOTE_UP#"$REPO"/})" >&2
else
    REMOTE_UP_RUN=$REMOTE_UP
fi
PATH="$WORK/bin:$PATH" "$REMOTE_UP_RUN" -n "$WORKERS" -j 1 -p "$PORT" --dir "$GRID" \
    > "$WORK/logs/remote-up.out" 2> "$WORK/logs/remote-up.err" &
grid_pid=$!
deadline=$((SECONDS + 120))
until grep -q '^remote-up: serving' "$WORK/logs/remote-up.err" 2>/dev/null; do
    if ! kill -0 "$grid_pid" 2>/dev/null; then
        cat "$WORK/logs/remote-up.err" >&2; die "scripts/remote-up exited"
    fi
    [[ $SECONDS -lt $deadline ]] || { cat "$WORK/logs/remote-up.err" >&2; die "scripts/remote-up was not serving within 120 s"; }
    sleep 0.2
done
for i in $(seq "$WORKERS"); do
    for _ in $(seq 50); do grep -q ': serving ' "$GRID/worker-$i.log" 2>/dev/null && break; sleep 0.2; done
    grep -q ': serving ' "$GRID/worker-$i.log" || { cat "$GRID/worker-$i.log" >&2; die "worker $i is not serving"; }
    # Each line of the worker's log, with the time it was written.
    tail -n +1 -F "$GRID/worker-$i.log" 2>/dev/null \
        > >(while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done > "$WORK/logs/worker-$i.ts") &
    tail_pids+=($!)
done

# --- the generated flakes -------------------------------------------------
# generate DIR SALT [CHANGE]: DIR/flake.nixlike, the DAG with SALT in every
# derivation; CHANGE (if any) is appended to leaf 0's line. Besides `root`
# (the top), every leaf and mid is an attribute of its own (`leaf-0`,
# `mid-0`, …), for the substitution floor; `single` is a one-derivation
# build for the latency runs.
generate() {
    mkdir -p "$1"
    cat > "$1/flake.nixlike" <<EOF
# generated by bench/remote/run.sh
{ pkgs, ... }:
let
  salt = "$2";
  n = $LEAVES;
  drv = name: script: derivation {
    inherit name salt;
    system = "x86_64-linux";
    builder = "\${pkgs.busybox}/bin/sh";
    args = [ "-c" script ];
  };
  leaves = builtins.genList (i: drv "leaf-\${toString i}"
    "echo leaf \${toString i}\${if i == 0 then "${3:-}" else ""} > \$out") n;
  mids = builtins.genList (i: drv "mid-\${toString i}"
    "cat \${builtins.elemAt leaves i} \${builtins.elemAt leaves (if i + 1 == n then 0 else i + 1)} > \$out") n;
in builtins.listToAttrs (map (d: { name = d.name; value = d; }) (leaves ++ mids)) // {
  root = drv "top" "cat \${builtins.concatStringsSep " " mids} > \$out";
  single = drv "single" "echo single > \$out";
}
EOF
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# build TAG STORE DIR ATTR [ARGS...]: mini build; sets t (seconds) and out
# (the printed output path); exits 1 on failure. Its stderr is
# $WORK/logs/TAG.err.
build() {
    local tag=$1 store=$2 dir=$3 attr=$4 rc=0 a b
    shift 4
    a=$EPOCHREALTIME
    timeout "$BUILD_TIMEOUT" "$MINI" --store "$store" build "$dir#$attr" --no-link --print-out-paths "$@" \
        > "$WORK/logs/$tag.out" 2> "$WORK/logs/$tag.err" || rc=$?
    [[ $rc -ne 124 ]] || { tail -n 5 "$WORK/logs/$tag.err" >&2; fail "mini build ($tag) did not end within $BUILD_TIMEOUT s"; }
    b=$EPOCHREALTIME
    [[ $rc -eq 0 ]] || { tail -n 20 "$WORK/logs/$tag.err" >&2; fail "mini build ($tag) failed (exit $rc)"; }
    t=$(secs "$a" "$b")
    out=$(grep -o '/mini/store/[^ ]*' "$WORK/logs/$tag.out" | tail -n 1 || true)
    [[ -n $out ]] || fail "mini build ($tag) printed no output path"
}

# stats TAG: the `remote: …` line of TAG's build as "E C B N D".
stats() {
    sed -n 's/^remote: \([0-9]*\) executed, \([0-9]*\) from the action cache; \([0-9]*\) blobs (\([0-9]*\) bytes) uploaded, \([0-9]*\) bytes downloaded$/\1 \2 \3 \4 \5/p' \
        "$WORK/logs/$1.err" | tail -n 1
}

# grid_cpu: CPU seconds used so far by BuildGrid's server, PostgreSQL
# and the workers ("BGD PG WORKERS"): each process whose command line
# names $GRID, with its waited-for children, plus its live children
# (PostgreSQL's backends, a worker's builds).
grid_cpu() {
    python3 - "$GRID" <<'PY'
import os, sys
grid, hz = sys.argv[1], os.sysconf("SC_CLK_TCK")
procs = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    procs[int(pid)] = (cmd, int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))
total = {"bgd": 0, "pg": 0, "worker": 0}
for pid, (cmd, ppid, own, children) in procs.items():
    if grid not in cmd:
        continue
    kind = "bgd" if "bgd" in cmd else "pg" if "postgres" in cmd else "worker" if " worker " in cmd else None
    if kind is None:
        continue
    total[kind] += own + children + sum(p[2] for p in procs.values() if p[1] == pid)
print(" ".join(f"{total[k] / hz:.2f}" for k in ("bgd", "pg", "worker")))
PY
}
# client_cpu: CPU seconds of this shell's waited-for children so far.
client_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($14 + $15) / hz }' /proc/$$/stat; }

# fallback TAG: sets fb to how many derivations TAG's build built here
# after their remote build failed, and shows the first warnings.
anomalies=()
fallback() {
    fb=$(grep -c "^warning: the remote build of .* failed, building it here instead" "$WORK/logs/$1.err" || true)
    if [[ $fb -gt 0 ]]; then
        echo "run.sh: $1: $fb derivation(s) built here after a remote failure:" >&2
        grep "^warning: the remote build of" "$WORK/logs/$1.err" | head -n 3 >&2
    fi
}

# check_top STORE OUT CHANGE: the top's output holds both leaves of every mid.
check_top() {
    local file="$1/store/${2#/mini/store/}"
    [[ -f $file ]] || fail "result $file missing"
    awk -v n="$LEAVES" -v c="$3" '
        { want = (NR % 2) ? (NR - 1) / 2 : NR / 2; if (want == n) want = 0
          if ($0 != "leaf " want (want == 0 ? c : "")) bad = 1 }
        END { exit bad || NR != 2 * n }' "$file" || { head -n 4 "$file" >&2; fail "result $file has wrong contents"; }
}

# cas_files: every blob file of BuildGrid's disk CAS, sorted.
cas_files() { find "$GRID/cas" -type f | LC_ALL=C sort; }
# classify_blobs: a table of the blob files named on stdin, by what they
# hold (told apart by their contents: NARs by their magic, the Command by
# its arguments, Directories by their entries' names).
classify_blobs() {
    python3 -c '
import re, sys
kinds = {}
for name in sys.stdin.read().split():
    data = open(name, "rb").read()
    if data.startswith(b"\x0d\x00\x00\x00\x00\x00\x00\x00nix-archive-1"):
        kind = "client: NAR of a .drv" if b"\"inputDrvs\"" in data else "worker: NAR of an output"
    elif b"build-derivation" in data:
        kind = "client: Command"
    elif re.fullmatch(rb"([0-9a-z]{32}-[^\n]*\n)+", data):
        kind = "client: manifest mini/paths"
    elif b"mini/store/" in data and b".nar" in data:
        kind = "server: ActionResult and the like (output paths)"
    elif b".nar" in data:
        kind = "client: Directory mini/store/"
    elif b"\x05paths" in data and b"\x05store" in data:
        kind = "client: Directory mini/"
    elif b"\x04mini" in data and len(data) < 120:
        kind = "client: Directory (input root)"
    else:
        kind = "client: Action (or a log)"
    n, size = kinds.get(kind, (0, 0))
    kinds[kind] = (n + 1, size + len(data))
print("| blobs | count | bytes |")
print("|---|---:|---:|")
for kind, (n, size) in sorted(kinds.items()):
    print(f"| {kind} | {n} | {size} |")
print(f"| all | {sum(n for n, _ in kinds.values())} | {sum(s for _, s in kinds.values())} |")
'
}

echo "mini:   $MINI_SRC" >&2
FS=$(findmnt -no FSTYPE,OPTIONS -T "$WORK" 2>/dev/null | awk 'NR == 1 { print $1 " (" $2 ")" }' || stat -f -c %T "$WORK")
echo "work:   $WORK on $FS" >&2
echo "dag:    $LEAVES leaves + $LEAVES mids + 1 top = $DRVS derivations; remote -j $REMOTE_JOBS vs local -j $LOCAL_JOBS; $ROUNDS rounds" >&2

# Warm-up, not timed: the server, the database and the workers' first
# action; busybox goes into CAS once.
nonce="$(date +%s%N)-$RANDOM"
generate "$WORK/src/warmup" "$nonce-warmup"
build warmup "$WORK/stores/warmup" "$WORK/src/warmup" single --remote "$URL"
read -r e _ <<<"$(stats warmup)"
[[ ${e:-0} -eq 1 ]] || { cat "$WORK/logs/warmup.err" >&2; fail "the warm-up was not executed remotely"; }

# The substitution floor's signing key, and the DAG's attributes.
"$MINI" key generate bench-remote --out "$WORK/keys" > "$WORK/logs/key.out" 2>&1 || { cat "$WORK/logs/key.out" >&2; die "mini key generate failed"; }
KEY_FILE="$WORK/keys/bench-remote.secret"
cp "$WORK/keys/bench-remote.public" "$KEY_FILE.pub"
all_attrs=(root)
for ((i = 0; i < LEAVES; i++)); do all_attrs+=("leaf-$i" "mid-$i"); done

machine_cpu() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
cpu0=$(machine_cpu) wall0=$EPOCHREALTIME load0=$(cut -d' ' -f1-3 /proc/loadavg)

declare -A remote_t local_t over_ms
cpu_rows=()
cached_t=() noop_t=() subst_t=() cached_dl=() full_up=() leaf_up=() leaf_remote_t=() leaf_local_t=()
jobs_arr=($REMOTE_JOBS)
for ((r = 1; r <= ROUNDS; r++)); do
    # Rotate the order of the -j values, and alternate remote and local.
    k=0
    for ((x = 0; x < ${#jobs_arr[@]}; x++)); do
        j=${jobs_arr[$(((x + r - 1) % ${#jobs_arr[@]}))]}
        k=$((k + 1))
        salt="$nonce-r$r-j$j"
        src="$WORK/src/r$r-j$j"
        generate "$src" "$salt"
        for who in $( (((r + k) % 2)) && echo "remote local" || echo "local remote"); do
            if [[ $who == remote ]]; then
                read -r g0b g0p g0w <<<"$(grid_cpu)"; c0=$(client_cpu)
                build "remote-r$r-j$j" "$WORK/stores/remote-r$r-j$j" "$src" root --remote "$URL" -j "$j"
                c1=$(client_cpu); read -r g1b g1p g1w <<<"$(grid_cpu)"
                cpu_rows+=("$(awk -v a="$g0b $g0p $g0w $c0" -v b="$g1b $g1p $g1w $c1" -v t="$t" 'BEGIN { split(a, x); split(b, y); printf "%.2f %.2f %.2f %.2f %.3f", y[1] - x[1], y[2] - x[2], y[3] - x[3], y[4] - x[4], t }')")
                check_top "$WORK/stores/remote-r$r-j$j" "$out" ""
                remote_t[$r,$j]=$t rout=$out
                read -r e c b n d <<<"$(stats "remote-r$r-j$j")"
                fallback "remote-r$r-j$j"
                [[ $e -eq $DRVS && $c -eq 0 ]] || anomalies+=("remote-r$r-j$j: $e executed, $c from the action cache (want $DRVS, 0); $fb built here after a remote failure")
                [[ $j -ne $CACHED_JOBS ]] || full_up+=("$b $n")
                echo "round $r: remote -j $j ${t}s ($b blobs, $n bytes up; $d bytes down)" >&2
            else
                build "local-r$r-j$j" "$WORK/stores/local-r$r-j$j" "$src" root -j "$LOCAL_JOBS" --no-remote
                check_top "$WORK/stores/local-r$r-j$j" "$out" ""
                local_t[$r,$j]=$t lout=$out
                echo "round $r: local -j $LOCAL_JOBS ${t}s" >&2
            fi
        done
        [[ $rout == "$lout" ]] || fail "remote and local builds made different paths: $rout, $lout"
        cmp -s "$WORK/stores/remote-r$r-j$j/store/${rout#/mini/store/}" "$WORK/stores/local-r$r-j$j/store/${lout#/mini/store/}" \
            || fail "remote and local outputs differ"
        over_ms[$r,$j]=$(awk -v a="${remote_t[$r,$j]}" -v b="${local_t[$r,$j]}" -v n="$DRVS" 'BEGIN { printf "%.1f", (a - b) * 1000 / n }')
    done

    # The second client, everything from the action cache; and its floors.
    j=$CACHED_JOBS src="$WORK/src/r$r-j$j"
    build "cached-r$r" "$WORK/stores/cached-r$r" "$src" root --remote "$URL" -j "$j"
    check_top "$WORK/stores/cached-r$r" "$out" ""
    read -r e c b n d <<<"$(stats "cached-r$r")"
    fallback "cached-r$r"
    [[ $e -eq 0 && $c -eq $DRVS ]] || anomalies+=("cached-r$r: $e executed, $c from the action cache (want 0, $DRVS); $fb built here after a remote failure")
    cached_t+=("$t") cached_dl+=("$d")
    echo "round $r: cached client ${t}s ($d bytes down, $b blobs up)" >&2
    for ((i = 1; i <= NOOP_RUNS; i++)); do
        build "noop-r$r" "$WORK/stores/local-r$r-j$j" "$src" root -j "$LOCAL_JOBS" --no-remote
        if grep -q "^building '" "$WORK/logs/noop-r$r.err"; then fail "the no-op rebuild built something"; fi
        noop_t+=("$t")
    done
    echo "round $r: no-op rebuild ${noop_t[-1]}s" >&2
    # The floor: every output of the DAG substituted from a file:// binary
    # cache into a fresh store, the same evaluation as the no-op included
    # (filling the cache is not timed).
    "$MINI" --store "$WORK/stores/local-r$r-j$j" copy --to "file://$WORK/cache-r$r" --secret-key "$KEY_FILE" "${all_attrs[@]/#/$src#}" \
        > /dev/null 2> "$WORK/logs/copy-r$r.err" || { cat "$WORK/logs/copy-r$r.err" >&2; fail "mini copy --to failed"; }
    subst_store="$WORK/stores/subst-r$r"
    a=$EPOCHREALTIME
    "$MINI" --store "$subst_store" build "${all_attrs[@]/#/$src#}" --no-link -j "$j" --no-remote \
        --substituters "file://$WORK/cache-r$r" --trusted-public-keys "$(cat "$KEY_FILE.pub")" \
        > /dev/null 2> "$WORK/logs/subst-r$r.err" || { cat "$WORK/logs/subst-r$r.err" >&2; fail "the substituting build failed"; }
    b=$EPOCHREALTIME
    if grep -q "^building '" "$WORK/logs/subst-r$r.err"; then fail "the substituting build built something"; fi
    got=$(ls "$subst_store/store" | grep -cE -- '-(leaf|mid)-[0-9]+$|-top$' || true)
    [[ $got -eq $DRVS ]] || fail "the substituting build fetched $got outputs, want $DRVS"
    subst_t+=("$(secs "$a" "$b")")
    echo "round $r: substituting build of the $DRVS outputs from file:// ${subst_t[-1]}s" >&2

    # One leaf changes: the same client stores build again.
    generate "$src-leaf" "$nonce-r$r-j$j" " changed"
    cas_files > "$WORK/logs/cas-before.txt"
    build "leaf-remote-r$r" "$WORK/stores/remote-r$r-j$j" "$src-leaf" root --remote "$URL" -j "$j"
    check_top "$WORK/stores/remote-r$r-j$j" "$out" " changed"
    read -r e c b n d <<<"$(stats "leaf-remote-r$r")"
    leaf_up+=("$b $n $e $c $d") leaf_remote_t+=("$t")
    cas_files > "$WORK/logs/cas-after.txt"
    comm -13 "$WORK/logs/cas-before.txt" "$WORK/logs/cas-after.txt" | classify_blobs > "$WORK/logs/cas-new.txt"
    echo "round $r: one leaf changed, remote ${t}s: $e executed, $c cached, $b blobs ($n bytes) up, $d bytes down" >&2
    build "leaf-local-r$r" "$WORK/stores/local-r$r-j$j" "$src-leaf" root -j "$LOCAL_JOBS" --no-remote
    check_top "$WORK/stores/local-r$r-j$j" "$out" " changed"
    leaf_local_t+=("$t")
done

# --- latency of one action ------------------------------------------------
single_t=() single_local_t=() single_noop_t=() to_building=() building_built=() built_to_end=()
for ((i = 1; i <= SINGLE_RUNS; i++)); do
    generate "$WORK/src/single-$i" "$nonce-single-$i"
    a=$EPOCHREALTIME
    build "single-$i" "$WORK/stores/single" "$WORK/src/single-$i" single --remote "$URL"
    b=$EPOCHREALTIME
    single_t+=("$t")
    sleep 0.2
    # The worker's last `building …-single.drv` line is this run's.
    line=$(cat "$WORK"/logs/worker-*.ts | grep -E ' building [^ ]*-single\.drv$' | sort -g | tail -n 1 || true)
    tb=${line%% *} drv=${line##* } td=""
    [[ -z $line ]] || td=$(cat "$WORK"/logs/worker-*.ts | grep -F " built $drv" | awk '{ print $1 }' | tail -n 1 || true)
    if [[ -n $tb && -n $td ]]; then
        to_building+=("$(secs "$a" "$tb")") building_built+=("$(secs "$tb" "$td")") built_to_end+=("$(secs "$td" "$b")")
    fi
    build "single-local-$i" "$WORK/stores/single-local" "$WORK/src/single-$i" single --no-remote
    single_local_t+=("$t")
    build "single-noop-$i" "$WORK/stores/single-local" "$WORK/src/single-$i" single --no-remote
    single_noop_t+=("$t")
    echo "single $i: remote ${single_t[-1]}s, local ${single_local_t[-1]}s, no-op ${t}s" >&2
done

cpu1=$(machine_cpu) wall1=$EPOCHREALTIME load1=$(cut -d' ' -f1-3 /proc/loadavg)
machine=$(awk -v a="$cpu0" -v b="$cpu1" -v w0="$wall0" -v w1="$wall1" -v n="$(nproc)" \
    'BEGIN { printf "%.0f CPU-s over %.0f s wall (%.0f%% of %d cores)", b - a, w1 - w0, 100 * (b - a) / ((w1 - w0) * n), n }')

# --- the tables -----------------------------------------------------------
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ms() { awk -v s="$1" 'BEGIN { printf "%.0f", s * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
col() { local i=$1; shift; printf '%s\n' "$@" | awk -v i="$i" '{ print $i }'; }

best_j="" best_med=""
for j in $REMOTE_JOBS; do
    v=(); for ((r = 1; r <= ROUNDS; r++)); do v+=("${remote_t[$r,$j]}"); done
    m=$(median "${v[@]}")
    if [[ -z $best_med ]] || awk -v a="$m" -v b="$best_med" 'BEGIN { exit !(a < b) }'; then best_j=$j best_med=$m; fi
done

overhead_table=$(
    echo "| remote -j | remote s (best / median) | local -j $LOCAL_JOBS s (best / median) | remote / local (median) | overhead ms per action (best / median of the rounds' pairs) | target ≤ 50 ms |"
    echo "|---:|---:|---:|---:|---:|---|"
    for j in $REMOTE_JOBS; do
        rv=() lv=() ov=()
        for ((r = 1; r <= ROUNDS; r++)); do rv+=("${remote_t[$r,$j]}"); lv+=("${local_t[$r,$j]}"); ov+=("${over_ms[$r,$j]}"); done
        om=$(median "${ov[@]}")
        verdict=$(awk -v m="$om" 'BEGIN { print (m <= 50 ? "met" : "missed") }')
        mark=""; [[ $j != "$best_j" ]] || mark=" (best)"
        echo "| $j$mark | $(best "${rv[@]}") / $(median "${rv[@]}") | $(best "${lv[@]}") / $(median "${lv[@]}") | $(ratio "$(median "${rv[@]}")" "$(median "${lv[@]}")") | $(best "${ov[@]}") / $om | $verdict |"
    done
)

cb=$(best "${cached_t[@]}") cm=$(median "${cached_t[@]}")
nb=$(best "${noop_t[@]}") nm=$(median "${noop_t[@]}")
sb=$(best "${subst_t[@]}") sm=$(median "${subst_t[@]}")
dl_b=$(awk -v a="$sb" -v b="$nb" 'BEGIN { printf "%.3f", a - b }')
dl_m=$(awk -v a="$sm" -v b="$nm" 'BEGIN { printf "%.3f", a - b }')
cached_table=$(
    echo "| cached second client (-j $CACHED_JOBS, fresh store) | best | median |"
    echo "|---|---:|---:|"
    echo "| cached client: \`mini build --remote\`, $DRVS actions from the action cache | $(ms "$cb") ms | $(ms "$cm") ms |"
    echo "| local no-op rebuild (\`mini build\` again in the built store; $NOOP_RUNS per round) | $(ms "$nb") ms | $(ms "$nm") ms |"
    echo "| no-op + download: a fresh store substituting the same $DRVS outputs from a file:// cache (\`--substituters\`, -j $CACHED_JOBS) | $(ms "$sb") ms | $(ms "$sm") ms |"
    echo "| (download alone: that minus the no-op) | $(ms "$dl_b") ms | $(ms "$dl_m") ms |"
    echo "| bytes downloaded by the cached client (\`remote:\` line) | $(best "${cached_dl[@]}") | $(median "${cached_dl[@]}") |"
    echo "| cached / no-op | $(ratio "$cb" "$nb") | $(ratio "$cm" "$nm") |"
    echo "| cached / (no-op + download), target ≤ 2x | $(ratio "$cb" "$sb") | $(ratio "$cm" "$sm") |"
)

leaf_table=$(
    full_n=$(median $(col 2 "${full_up[@]}")) leaf_n=$(median $(col 2 "${leaf_up[@]}"))
    echo "| build from the same client store (-j $CACHED_JOBS) | blobs uploaded | bytes uploaded | executed | from the action cache | bytes downloaded | wall s |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for ((r = 1; r <= ROUNDS; r++)); do
        read -r fb fn <<<"${full_up[$((r - 1))]}"
        read -r lb ln le lc ld <<<"${leaf_up[$((r - 1))]}"
        echo "| round $r: full first build | $fb | $fn | $DRVS | 0 | | ${remote_t[$r,$CACHED_JOBS]} |"
        echo "| round $r: leaf 0 changed | $lb | $ln | $le | $lc | $ld | ${leaf_remote_t[$((r - 1))]} |"
    done
    echo "| leaf 0 changed, built locally (-j $LOCAL_JOBS), median | | | | | | $(median "${leaf_local_t[@]}") |"
    echo
    echo "One-leaf upload / full upload (bytes, medians): $(awk -v a="$leaf_n" -v b="$full_n" 'BEGIN { printf "%.1f%%", 100 * a / b }')."
    if [[ -s $WORK/logs/cas-new.txt ]]; then
        echo
        echo "Blobs that appeared in BuildGrid's CAS during round $ROUNDS's one-leaf build (from the client and the workers), by kind:"
        echo
        cat "$WORK/logs/cas-new.txt"
    fi
)

cpu_table=$(
    echo "| CPU per remote build of the overhead rounds (all -j, $(( ${#cpu_rows[@]} )) builds) | CPU-s per build (median) | CPU ms per action (median) |"
    echo "|---|---:|---:|"
    names=("BuildGrid server (bgd, Python)" "PostgreSQL (scheduler database)" "both mini workers (with their builds)" "the client (mini build --remote)")
    for k in 1 2 3 4; do
        m=$(median $(col "$k" "${cpu_rows[@]}"))
        echo "| ${names[$((k - 1))]} | $m | $(awk -v m="$m" -v n="$DRVS" 'BEGIN { printf "%.0f", m * 1000 / n }') |"
    done
    tot=$(median $(printf '%s\n' "${cpu_rows[@]}" | awk '{ print $1 + $2 + $3 + $4 }'))
    wall=$(median $(col 5 "${cpu_rows[@]}"))
    echo "| all of them | $tot | $(awk -v m="$tot" -v n="$DRVS" 'BEGIN { printf "%.0f", m * 1000 / n }') |"
    echo
    echo "Median wall time of those builds: ${wall} s, so $(awk -v c="$tot" -v w="$wall" -v n="$(nproc)" 'BEGIN { printf "%.0f%%", 100 * c / (w * n) }') of the machine's $(nproc) cores went to the remote build's processes."
)

# The workers' cycle per -j, from their timestamped logs: each action's
# `building` → `built` (the build itself), and a worker's `built` → its
# next `building` within one build (reporting the lease, BuildGrid
# assigning the next one, fetching and importing its inputs).
cycle_table=$(
    python3 - "$WORK" "$REMOTE_JOBS" <<'PY'
import glob, os, re, statistics as st, sys
work, jobs = sys.argv[1], sys.argv[2].split()
owner = {}
for f in glob.glob(f"{work}/logs/remote-r*-j*.err"):
    tag = os.path.basename(f)[:-4]
    for m in re.finditer(r"building '(/mini/store/[^']+\.drv)'", open(f).read()):
        owner[m.group(1)] = tag
per = {}
for w in glob.glob(f"{work}/logs/worker-*.ts"):
    last = start = None
    for line in open(w):
        p = line.split()
        if len(p) < 6 or p[5] not in owner:
            last = None
            continue
        t, event, tag = float(p[0]), p[4], owner[p[5]]
        r = per.setdefault(tag, ([], []))
        if event == "building":
            if last and last[1] == tag:
                r[1].append(t - last[0])
            start = t
        elif event == "built" and start is not None:
            r[0].append(t - start)
            last = (t, tag)
print("| remote -j | worker: `building` → `built`, ms (median) | worker: `built` → next `building`, ms (median / 90th percentile) |")
print("|---:|---:|---:|")
for j in jobs:
    builds = [v for k, v in per.items() if k.endswith(f"-j{j}")]
    b = [x for v in builds for x in v[0]]
    g = sorted(x for v in builds for x in v[1])
    if b and g:
        print(f"| {j} | {st.median(b) * 1000:.0f} | {st.median(g) * 1000:.0f} / {g[int(len(g) * 0.9)] * 1000:.0f} |")
PY
)

latency_table=$(
    echo "| one derivation (\`single\`), $SINGLE_RUNS runs | best ms | median ms |"
    echo "|---|---:|---:|"
    echo "| remote build, client wall time | $(ms "$(best "${single_t[@]}")") | $(ms "$(median "${single_t[@]}")") |"
    echo "| local build (\`--no-remote\`, the same salt) | $(ms "$(best "${single_local_t[@]}")") | $(ms "$(median "${single_local_t[@]}")") |"
    echo "| local no-op rebuild (evaluation and start-up alone) | $(ms "$(best "${single_noop_t[@]}")") | $(ms "$(median "${single_noop_t[@]}")") |"
    if [[ ${#to_building[@]} -gt 0 ]]; then
        echo "| client start → worker's \`building\` line | $(ms "$(best "${to_building[@]}")") | $(ms "$(median "${to_building[@]}")") |"
        echo "| worker's \`building\` → \`built\` | $(ms "$(best "${building_built[@]}")") | $(ms "$(median "${building_built[@]}")") |"
        echo "| worker's \`built\` → client exits | $(ms "$(best "${built_to_end[@]}")") | $(ms "$(median "${built_to_end[@]}")") |"
    fi
)

echo
echo "$overhead_table"
echo
echo "$cached_table"
echo
echo "$leaf_table"
echo
echo "$cpu_table"
echo
echo "$cycle_table"
echo
echo "$latency_table"
echo
if [[ ${#anomalies[@]} -gt 0 ]]; then printf 'anomaly: %s\n' "${anomalies[@]}"; echo; fi
echo "machine: $machine (BuildGrid, PostgreSQL and the workers included); load average $load0 before, $load1 after"

if [[ $record -eq 1 ]]; then
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -n 1)" ]]; then rev="$rev (dirty)"; fi
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
    bgd_version=$("$HOME/.cache/mini/buildgrid-venv/bin/pip" show buildgrid 2>/dev/null | awk '/^Version/ { print $2 }' || true)
    {
        echo "# Remote-build benchmark: last results"
        echo
        echo "Generated by \`bench/remote/run.sh --record\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
        echo
        echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
        echo "- mini: \`${MINI_SRC#"$REPO"/}\`, commit $rev"
        echo "- BuildGrid ${bgd_version:-?} started by \`${REMOTE_UP#"$REPO"/}\` (PostgreSQL scheduler, disk CAS, jobs assigned every 20 ms; $(grep '^thread-pool-size:' "$GRID/server.yml" || echo "BuildGrid's default thread-pool-size")), $WORKERS \`mini worker\`s, each -j 1 with a store of its own, all on this machine"
        echo "- DAG: $LEAVES leaves + $LEAVES mids + 1 top = $DRVS derivations, a fresh salt per build; $ROUNDS rounds"
        echo "- work directory (stores, CAS, database): \`${TMPDIR:-/tmp}\`, $FS"
        echo "- machine CPU during the measurements: $machine, BuildGrid, PostgreSQL and the workers included; load average $load0 before, $load1 after"
        echo
        echo "## Overhead per action"
        echo
        echo "$overhead_table"
        echo
        echo "## Cached second client"
        echo
        echo "$cached_table"
        echo
        echo "## One leaf changed"
        echo
        echo "$leaf_table"
        echo
        echo "## Where the time goes"
        echo
        echo "$cpu_table"
        echo
        echo "$cycle_table"
        echo
        echo "$latency_table"
        if [[ ${#anomalies[@]} -gt 0 ]]; then
            echo
            echo "## Anomalies"
            echo
            printf -- '- %s\n' "${anomalies[@]}"
        fi
    } > "$RESULTS_FILE"
    echo "recorded in $RESULTS_FILE" >&2
fi
