#!/usr/bin/env bash
# Builds benchmark: a DAG of $LEAVES (default 200) trivial derivations, each
# running busybox `sh -c` to write one file, plus one root that depends on
# them all. Built with `mini build` and with Nix 2.8's `nix-build`, both
# sandboxed, both at `-j $JOBS` (default 2), in the same run, with a fresh
# salt in every round so nothing is ever cached. Then the no-op rebuild of
# the last round (everything already built), best of $NOOP_RUNS.
#
# Usage: bench/build/dag.sh [--record] [--probe]
#   --record   also write the table to bench/build/last-results.md
#   --probe    first build a probe derivation under Nix that prints what
#              the builder sees (proof that Nix really sandboxes), then go on
#
# Environment:
#   MINI       mini binary (default: $REPO/target/release/mini; never built
#              by this script)
#   ROUNDS     fresh-salt rounds per builder (default 3); the table gives
#              the best and the median round
#   NOOP_RUNS  no-op rebuilds per builder (default 5)
#   LEAVES     leaf derivations (default 200)
#   JOBS       parallel builds, `-j` of both builders (default 2)
#   NIX_BUILD  the Nix peer (default: nix-build)
#   KEEP=1     keep the work directory (default: deleted at exit)
#   TMPDIR     where the work directory goes (default /tmp). It holds both
#              stores and both builders' temporary directories, so both
#              builders always share one filesystem. On ext4 without a
#              journal (this VM's /) inode allocation skips recently deleted
#              inodes (recently_deleted()), which makes every run after heavy
#              file churn (cargo, rm -rf) 2-4x slower and noisy;
#              TMPDIR=/dev/shm (tmpfs) gives steady figures.
#
# Needs root, util-linux `unshare` and `mount`, Debian `busybox-static`
# (/bin/busybox) and `nix-bin` (Nix 2.8). Nix runs in a private mount
# namespace with a fresh, empty directory bind-mounted over /nix, so it uses
# an ordinary /nix/store of its own and the host's /nix is never touched
# (not even by Nix 2.8's chroot-store bug that moves failed outputs to the
# host's /nix/store). Its configuration is a private NIX_CONF_DIR:
#   sandbox = true, sandbox-fallback = false, build-users-group = nixbld,
#   substituters = (none), max-jobs = $JOBS
# The build users come from Debian's nix-bin (group nixbld, nixbld1..10);
# if the group or users are missing the script creates them, idempotently
# (existing ones are left alone; nothing is ever deleted).
#
# Exit status: 0 if every build succeeded (also when mini has no `build`
# command yet: its columns then say "pending"), 1 if a build failed or
# produced a wrong result, 2 on usage or setup errors.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
MINI=${MINI:-$REPO/target/release/mini}
ROUNDS=${ROUNDS:-3}
NOOP_RUNS=${NOOP_RUNS:-5}
LEAVES=${LEAVES:-200}
JOBS=${JOBS:-2}
NIX_BUILD=${NIX_BUILD:-nix-build}
RESULTS_FILE="$BENCH_DIR/last-results.md"

record=0 probe=0
for arg in "$@"; do
    case "$arg" in
        --record) record=1 ;;
        --probe) probe=1 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "dag.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

die() { echo "dag.sh: $*" >&2; exit 2; }
for v in ROUNDS NOOP_RUNS LEAVES JOBS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $(id -u) -eq 0 ]] || die "must run as root (Nix's build users and the private /nix mount need it)"
# The private /nix needs a mount point; a fresh machine with nix-bin may
# have none. An empty directory is all that is ever made there.
[[ -d /nix ]] || mkdir /nix || die "cannot create the mount point /nix"
command -v unshare >/dev/null || die "unshare not found (util-linux)"
[[ -x /bin/busybox ]] || die "/bin/busybox not found; apt-get install -y busybox-static"
NIX_BUILD=$(command -v "$NIX_BUILD") || die "nix-build not found; apt-get install -y nix-bin"
NIX_VERSION=$("$NIX_BUILD" --version)

# Build users for Nix (idempotent: only what is missing is created).
ensure_build_users() {
    local i n=10
    if ! getent group nixbld >/dev/null; then
        echo "dag.sh: creating group nixbld" >&2
        groupadd --system nixbld
    fi
    for ((i = 1; i <= n; i++)); do
        if ! getent passwd "nixbld$i" >/dev/null; then
            echo "dag.sh: creating build user nixbld$i" >&2
            useradd --system --no-create-home --home-dir /var/empty --shell /usr/sbin/nologin \
                --gid nixbld --groups nixbld --comment "Nix build user $i" "nixbld$i"
        elif ! id -nG "nixbld$i" | tr ' ' '\n' | grep -qx nixbld; then
            usermod -a -G nixbld "nixbld$i"
        fi
    done
}
ensure_build_users

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mini-bench-build.XXXXXX")
cleanup() {
    if [[ ${KEEP:-0} == 1 ]]; then echo "dag.sh: kept $WORK" >&2; return; fi
    chmod -R u+w "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "dag.sh: interrupted" >&2; exit 130' INT TERM

# --- the Nix side ---------------------------------------------------------
mkdir -p "$WORK/nix" "$WORK/nix-conf" "$WORK/cache" "$WORK/tmp" "$WORK/busybox/bin"
cp /bin/busybox "$WORK/busybox/bin/busybox"
ln -s busybox "$WORK/busybox/bin/sh"
cat > "$WORK/nix-conf/nix.conf" <<EOF
sandbox = true
sandbox-fallback = false
build-users-group = nixbld
substituters =
max-jobs = $JOBS
EOF
# nix-run.sh TIMEFILE CMD...: inside the private mount namespace, put
# $WORK/nix over /nix and run CMD; writes "start end" ($EPOCHREALTIME) of
# CMD alone to TIMEFILE, so namespace set-up is not timed.
cat > "$WORK/nix-run.sh" <<EOF
#!/usr/bin/env bash
set -eu
mount --bind "$WORK/nix" /nix
export NIX_CONF_DIR="$WORK/nix-conf" NIX_PATH= NIX_REMOTE= XDG_CACHE_HOME="$WORK/cache" TMPDIR="$WORK/tmp"
unset NIX_STORE_DIR NIX_STATE_DIR NIX_LOG_DIR NIX_USER_CONF_FILES
tf=\$1; shift
rc=0; start=\$EPOCHREALTIME
"\$@" || rc=\$?
end=\$EPOCHREALTIME
echo "\$start \$end" > "\$tf"
exit \$rc
EOF
chmod +x "$WORK/nix-run.sh"
in_nix_ns() { unshare --mount --propagation private "$WORK/nix-run.sh" "$@"; }

# --- the generated recipes ------------------------------------------------
# body BB: the same DAG for both builders; BB is the expression for a store
# path with bin/busybox and bin/sh. Leaf i writes "i salt" to $out; the root
# interpolates every leaf's outPath, so it depends on all of them, and cats
# them into its $out.
body() {
    cat <<EOF
let
  salt = "$salt";
  bb = $1;
  leaf = i: derivation {
    name = "leaf-\${toString i}";
    system = "x86_64-linux";
    builder = "\${bb}/bin/sh";
    args = [ "-c" "echo \${toString i} \${salt} > \$out" ];
  };
in derivation {
  name = "root";
  system = "x86_64-linux";
  builder = "\${bb}/bin/sh";
  args = [ "-c" "cat \${builtins.concatStringsSep " " (builtins.genList leaf $LEAVES)} > \$out" ];
}
EOF
}
generate() { # generate DIR: $DIR/nix/default.nix and $DIR/mini/flake.nixlike
    mkdir -p "$1/nix" "$1/mini"
    {
        echo "# generated by bench/build/dag.sh, salt $salt"
        body "builtins.path { path = $WORK/busybox; name = \"busybox\"; }"
    } > "$1/nix/default.nix"
    {
        echo "# generated by bench/build/dag.sh, salt $salt"
        echo "{ pkgs, ... }: {"
        echo "  root ="
        body "pkgs.busybox" | sed 's/^/  /'
        echo "  ;"
        echo "}"
    } > "$1/mini/flake.nixlike"
}

# check_output FILE: FILE must hold "i $salt" for i = 0..LEAVES-1, in order.
check_output() {
    [[ -f $1 ]] || { echo "dag.sh: result $1 missing" >&2; return 1; }
    awk -v n="$LEAVES" -v s="$salt" '$0 != (NR - 1) " " s { exit 1 } END { exit NR != n }' "$1" \
        || { echo "dag.sh: result $1 has wrong contents" >&2; head -n 3 "$1" >&2; return 1; }
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# run_nix TAG DIR: build; sets t (seconds). Exits 1 on failure.
run_nix() {
    local rc=0
    in_nix_ns "$WORK/time" "$NIX_BUILD" -j "$JOBS" --no-out-link "$2/nix" \
        > "$WORK/$1.out" 2> "$WORK/$1.err" || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "dag.sh: nix-build failed (exit $rc):" >&2; tail -n 20 "$WORK/$1.err" >&2; exit 1
    fi
    read -r a b < "$WORK/time"; t=$(secs "$a" "$b")
    local out; out=$(tail -n 1 "$WORK/$1.out")
    [[ $out == /nix/store/*-root ]] || { echo "dag.sh: nix-build printed '$out'" >&2; exit 1; }
    check_output "$WORK/nix/store/${out#/nix/store/}" || exit 1
}

# run_mini TAG DIR: build; sets t (seconds). Exits 1 on failure.
run_mini() {
    local rc=0 a b out file
    a=$EPOCHREALTIME
    "$MINI" --store "$WORK/mini-store" build "$2/mini#root" -j "$JOBS" --no-link --print-out-paths \
        > "$WORK/$1.out" 2> "$WORK/$1.err" || rc=$?
    b=$EPOCHREALTIME
    if [[ $rc -ne 0 ]]; then
        echo "dag.sh: mini build failed (exit $rc):" >&2; tail -n 20 "$WORK/$1.err" >&2; exit 1
    fi
    t=$(secs "$a" "$b")
    out=$(grep -o '/mini/store/[^ ]*-root' "$WORK/$1.out" | tail -n 1 || true)
    file="$WORK/mini-store/store/${out#/mini/store/}"
    if [[ -n $out && -f $file ]]; then
        check_output "$file" || exit 1
    else
        echo "dag.sh: warning: could not find mini's root output from '$(tail -n 1 "$WORK/$1.out")'; contents not checked" >&2
    fi
}

mini_ok=1
if [[ ! -x $MINI ]]; then
    echo "dag.sh: mini binary $MINI not found; mini's figures will be pending (cargo build --release)" >&2
    mini_ok=0
elif ! "$MINI" build --help > /dev/null 2>&1; then
    echo "dag.sh: $MINI has no 'build' command yet; mini's figures will be pending" >&2
    mini_ok=0
fi

echo "nix:    $NIX_VERSION (sandbox = true, build-users-group = nixbld, private /nix)" >&2
echo "mini:   $MINI" >&2
FS=$(findmnt -no FSTYPE,OPTIONS -T "$WORK" 2>/dev/null | awk 'NR == 1 { print $1 " (" $2 ")" }' || stat -f -c %T "$WORK")
echo "work:   $WORK on $FS" >&2
echo "dag:    $LEAVES leaves + 1 root = $((LEAVES + 1)) derivations, -j $JOBS, $ROUNDS rounds, $NOOP_RUNS no-op runs" >&2

if [[ $probe -eq 1 ]]; then
    # Only stdout goes to $out: Nix 2.8 takes EOF on the builder's log pipe
    # (stdout and stderr both closed) as the end of the build and kills it
    # with SIGKILL ("failed due to signal 9").
    mkdir -p "$WORK/probe"
    cat > "$WORK/probe/default.nix" <<EOF
let bb = builtins.path { path = $WORK/busybox; name = "busybox"; }; in
derivation {
  name = "sandbox-probe-$(date +%s%N)";
  system = "x86_64-linux";
  builder = "\${bb}/bin/sh";
  args = [ "-c" ''
    exec > \$out
    echo "id:          \$(id)"
    echo "uid_map:     \$(cat /proc/self/uid_map)"
    echo "hostname:    \$(hostname)"
    echo "ls /:        \$(ls / | tr '\\n' ' ')"
    echo "ls /nix/store: \$(ls /nix/store | tr '\\n' ' ')"
    echo "ls /etc:     \$(ls /etc | tr '\\n' ' ')"
    echo "net devices: \$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')"
    echo "/etc/hostname: \$(cat /etc/hostname 2>&1)"
    echo "ls /work /root: \$(ls /work /root 2>&1 | tr '\\n' ' ')"
  '' ];
}
EOF
    in_nix_ns "$WORK/time" "$NIX_BUILD" --no-out-link "$WORK/probe" > "$WORK/probe.out" 2> "$WORK/probe.err" \
        || { echo "dag.sh: probe build failed:" >&2; cat "$WORK/probe.err" >&2; exit 1; }
    echo "== what a Nix builder sees (the host's /nix/store holds $(ls /nix/store 2>/dev/null | wc -l) entries, the private one $(ls "$WORK/nix/store" | wc -l)):" >&2
    sed 's/^/   /' "$WORK/nix/store/$(basename "$(tail -n 1 "$WORK/probe.out")")" >&2
fi

# The machine is shared: compare the CPU time the whole machine spent
# (/proc/stat) with what this script and its children spent (bash's
# `times`) to see how much other processes ran during the measurements.
machine_cpu() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
# `times` must run in this shell (not in $(...)) to see its children.
own_cpu() { awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] } printf "%.2f", t }' "$WORK/times"; }
times > "$WORK/times"; cpu0=$(machine_cpu) own0=$(own_cpu) wall0=$EPOCHREALTIME

nix_t=() mini_t=()
for ((r = 1; r <= ROUNDS; r++)); do
    salt="$(date +%s%N)-$r-$RANDOM"
    generate "$WORK/src/$r"
    # Alternate who goes first, so neither always runs on a warmer machine.
    for who in $( ((r % 2)) && echo "nix mini" || echo "mini nix"); do
        if [[ $who == nix ]]; then
            run_nix "nix$r" "$WORK/src/$r"; nix_t+=("$t")
            echo "round $r: nix-build ${t}s" >&2
        elif [[ $mini_ok -eq 1 ]]; then
            run_mini "mini$r" "$WORK/src/$r"; mini_t+=("$t")
            echo "round $r: mini build ${t}s" >&2
        fi
    done
done

# No-op rebuilds of the last round: same command, everything already built.
nix_noop=() mini_noop=()
for ((i = 1; i <= NOOP_RUNS; i++)); do
    run_nix nixnoop "$WORK/src/$ROUNDS"; nix_noop+=("$t")
    if [[ $mini_ok -eq 1 ]]; then run_mini mininoop "$WORK/src/$ROUNDS"; mini_noop+=("$t"); fi
done
if [[ $mini_ok -eq 1 ]] && grep -q "^building '" "$WORK/mininoop.err"; then
    echo "dag.sh: mini's no-op rebuild built something:" >&2; head -n 5 "$WORK/mininoop.err" >&2; exit 1
fi
if grep -q "^building '" "$WORK/nixnoop.err"; then
    echo "dag.sh: nix-build's no-op rebuild built something:" >&2; head -n 5 "$WORK/nixnoop.err" >&2; exit 1
fi

times > "$WORK/times"
other=$(awk -v m0="$cpu0" -v m1="$(machine_cpu)" -v o0="$own0" -v o1="$(own_cpu)" -v w0="$wall0" -v w1="$EPOCHREALTIME" -v n="$(nproc)" \
    'BEGIN { x = (m1 - m0) - (o1 - o0); if (x < 0) x = 0; printf "%.1f CPU-s besides this script'"'"'s %.1f, over %.1f s wall (%.0f%% of %d cores)", x, o1 - o0, w1 - w0, 100 * x / ((w1 - w0) * n), n }')
echo "other load: $other" >&2
if awk -v o="$other" 'BEGIN { split(o, a, "[(%]"); exit !(a[2] + 0 > 10) }'; then
    echo "dag.sh: warning: other processes used a good part of the machine during the run; figures are unreliable" >&2
fi

best() { printf '%s\n' "$@" | sort -g | head -n 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ms_per() { awk -v s="$1" -v n="$((LEAVES + 1))" 'BEGIN { printf "%.1f", s * 1000 / n }'; }
ms() { awk -v s="$1" 'BEGIN { printf "%.0f", s * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

nb=$(best "${nix_t[@]}") nm=$(median "${nix_t[@]}")
nnb=$(best "${nix_noop[@]}") nnm=$(median "${nix_noop[@]}")
if [[ $mini_ok -eq 1 ]]; then
    mb=$(best "${mini_t[@]}") mm=$(median "${mini_t[@]}")
    mnb=$(best "${mini_noop[@]}") mnm=$(median "${mini_noop[@]}")
    row() { echo "| $1 | $2 | $3 | $(ratio "$3" "$2") | $(ms_per "$2") | $(ms_per "$3") |"; }
    noop_row() { echo "| $1 | $(ms "$2") | $(ms "$3") |"; }
else
    row() { echo "| $1 | $2 | pending | pending | $(ms_per "$2") | pending |"; }
    noop_row() { echo "| $1 | $(ms "$2") | pending |"; }
fi

table=$(
    echo "| $((LEAVES + 1)) derivations, -j $JOBS, fresh salt | nix s | mini s | time ratio (mini/nix) | nix ms/drv | mini ms/drv |"
    echo "|---|---:|---:|---:|---:|---:|"
    row "best of $ROUNDS" "$nb" "${mb:-}"
    row "median of $ROUNDS" "$nm" "${mm:-}"
    echo
    echo "| no-op rebuild (all built) | nix ms | mini ms |"
    echo "|---|---:|---:|"
    noop_row "best of $NOOP_RUNS" "$nnb" "${mnb:-}"
    noop_row "median of $NOOP_RUNS" "$nnm" "${mnm:-}"
)
echo
echo "$table"
echo
echo "targets: time ratio <= 0.20x; mini's no-op rebuild < 100 ms"
[[ $mini_ok -eq 1 ]] || echo "mini: pending ($MINI has no 'build' command)"

if [[ $record -eq 1 ]]; then
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -n 1)" ]]; then rev="$rev (dirty)"; fi
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
    {
        echo "# Builds benchmark: last results"
        echo
        echo "Generated by \`bench/build/dag.sh --record\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
        echo
        echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
        echo "- nix: $NIX_VERSION, sandbox = true (sandbox-fallback = false), build-users-group = nixbld, no substituters, private /nix"
        echo "- mini: \`${MINI#"$REPO"/}\`, commit $rev"
        echo "- $LEAVES leaves + 1 root, \`-j $JOBS\`, a fresh salt in each of $ROUNDS rounds; no-op rebuild of the last round $NOOP_RUNS times"
        echo "- work directory (both stores, both builders' temporary directories): \`${TMPDIR:-/tmp}\`, $FS"
        echo "- other load during the measurements (machine CPU time from /proc/stat minus this script's): $other"
        echo "- wall time from bash's \$EPOCHREALTIME around each build command (for Nix, inside its mount namespace)"
        echo
        echo "$table"
        if [[ $mini_ok -eq 0 ]]; then
            echo
            echo "mini's figures are pending: \`mini build\` does not exist yet in this binary."
        fi
    } > "$RESULTS_FILE"
    echo "recorded in $RESULTS_FILE" >&2
fi
