#!/usr/bin/env bash
# Image benchmark (issue 16, "Images v2"): packing a synthetic closure
# ($PATHS store paths, default 100, holding $SIZE_MB MiB of random,
# incompressible bytes in all, default 1000, each path referring to the one
# before it) into images, against the floor of the same work done by
# standard tools in the same run: `tar -c` of the same store paths piped to
# `openssl dgst -sha256`. Five cases:
#
#   stream full      `mini build FLAKE#stream` (dockerTools.streamLayeredImage:
#                    hashes every layer, writes a small description) then
#                    `mini image copy RESULT oci:DIR` into a fresh OCI
#                    layout (makes every layer blob); layer digest cache
#                    deleted, new tag. Each timed, and the two together.
#   stream re-pack   the last path changed (its build not timed): the stream
#                    image again (timed), then `image copy` into the SAME OCI
#                    layout (timed): only the changed layers are made.
#   layered full     `mini build FLAKE#image` (dockerTools.buildLayeredImage:
#                    a docker-archive in the store), digest cache deleted.
#   layered re-pack  the last path changed again: the archive again.
#   second image     a second stream image, `contents = [ other ]`, where
#                    `other` is a new small path referring to the chain's
#                    second-to-last path: it shares 99 of its 100 paths with
#                    the first. Built with the digest cache warm, and copied
#                    into the same OCI layout.
#
# Usage: bench/image/pack.sh [--record | --record-append]
#   --record          also write the tables to bench/image/last-results.md
#   --record-append   add them to it as another section (e.g. a second
#                     filesystem: TMPDIR=/dev/shm bench/image/pack.sh --record-append)
#
# Environment:
#   MINI        mini binary (default: $REPO/target/release/mini; never built
#               by this script, and copied into the work directory first so
#               that a rebuild during the run cannot swap it)
#   MINI_REV    the commit MINI was built from, for --record (default: the
#               repository's HEAD, marked "dirty tree" if tracked files differ)
#   ROUNDS      rounds (default 3); the tables give the best and the median
#   PATHS       store paths in the closure (default 100)
#   SIZE_MB     MiB of random data in all (default 1000), split evenly
#   MAX_LAYERS  the images' maxLayers (default: unset, dockerTools' 100)
#   JOBS        -j for building the fixture (default 2)
#   PROFILE     1 (default): after the rounds, the layered full pack and
#               re-pack once more under `strace -f` (openat, rename, syncfs
#               and fsync only) for a wall-clock split into phases, and the
#               layered full pack, layered re-pack, stream full build,
#               full copy and floor once more each under `perf record -g -e
#               cpu-clock` (if perf works) for where the CPU time goes, by
#               kind (SHA-256, BLAKE3, read(), write(), page faults, ...).
#               Not counted in the rounds. 0 skips it.
#   KEEP=1      keep the work directory (default: deleted at exit)
#   TMPDIR      where the work directory goes (default /tmp); needs about
#               3.5 x SIZE_MB MiB free (the store, an OCI layout, one
#               docker-archive at a time).
#
# Each round (the floor and mini's full runs swap order every round):
#   1. floor, and stream full: the digest cache (<store>/layers) deleted, a
#      tag never built before, a fresh OCI layout.
#   2. floor, and layered full: the digest cache deleted again.
#   3. stream re-pack: the last path gets a new salt and is rebuilt (not
#      timed); the stream image is built with a new tag and copied into the
#      OCI layout of step 1. Then the same build once more (timed): it
#      has nothing to build, so it shows what evaluation alone costs.
#   4. layered re-pack: the last path gets another new salt (not timed);
#      the docker-archive is built with a new tag.
#   5. second image: `other` gets a new salt and is built (not timed); the
#      second stream image is built and copied into the same OCI layout.
#   `sync` before every timed command; the page cache is warm (everything
#   was read or written just before). Each time is wall time, with the
#   CPU time (user + system, bash's `time`) of the same run beside it. `mini gc` (roots: the last path and
#   its .drv) deletes the images after steps 2, 4 and 5, so at most one
#   docker-archive is on disk.
#
# Needs openssl, GNU tar, /usr/bin/time (Debian `time`), python3, and
# strace and perf for the breakdown.
#
# Exit status: 0 when every build and copy succeeded (whether or not the
# targets are met), 1 if one failed or gave a wrong result, 2 on setup
# errors.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
MINI_SRC=${MINI:-$REPO/target/release/mini}
ROUNDS=${ROUNDS:-3}
PATHS=${PATHS:-100}
SIZE_MB=${SIZE_MB:-1000}
MAX_LAYERS=${MAX_LAYERS:-}
JOBS=${JOBS:-2}
PROFILE=${PROFILE:-1}
RESULTS_FILE="$BENCH_DIR/last-results.md"

record=0
for arg in "$@"; do
    case "$arg" in
        --record) record=1 ;;
        --record-append) record=2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "pack.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

die() { echo "pack.sh: $*" >&2; exit 2; }
fail() { echo "pack.sh: $*" >&2; exit 1; }
for v in ROUNDS PATHS SIZE_MB JOBS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ -z $MAX_LAYERS || $MAX_LAYERS =~ ^[1-9][0-9]*$ ]] || die "MAX_LAYERS must be a positive integer"
[[ $PATHS -ge 3 ]] || die "PATHS must be at least 3"
[[ -x $MINI_SRC ]] || die "mini binary $MINI_SRC not found (cargo build --release)"
command -v openssl >/dev/null || die "openssl not found"
command -v tar >/dev/null || die "tar not found"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install -y time)"
command -v python3 >/dev/null || die "python3 not found (it reads the images' manifests and the profiles)"
use_strace=0 use_perf=0
if [[ $PROFILE == 1 ]]; then
    if command -v strace >/dev/null; then use_strace=1; else echo "pack.sh: strace not found; no phase split (apt-get install -y strace)" >&2; fi
    if command -v perf >/dev/null && perf record -q -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
        use_perf=1
    else
        echo "pack.sh: perf not found or not allowed; no CPU profile" >&2
    fi
fi

parent=${TMPDIR:-/tmp}
need_kb=$((SIZE_MB * 1024 * 35 / 10 + 200 * 1024))
avail_kb=$(df -Pk "$parent" | awk 'NR == 2 { print $4 }')
[[ $avail_kb -ge $need_kb ]] || die "$parent has $((avail_kb / 1024)) MiB free; needs about $((need_kb / 1024)) MiB (set TMPDIR)"

WORK=$(mktemp -d "$parent/mini-bench-image.XXXXXX")
cleanup() {
    if [[ ${KEEP:-0} == 1 ]]; then echo "pack.sh: kept $WORK" >&2; return; fi
    chmod -R u+w "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "pack.sh: interrupted" >&2; exit 130' INT TERM

M="$WORK/mini"
cp "$MINI_SRC" "$M"
STORE="$WORK/store"
FLAKE="$WORK/flake"
OCI="$WORK/oci"
mkdir -p "$FLAKE"
FS=$(findmnt -no FSTYPE,OPTIONS -T "$WORK" 2>/dev/null | awk 'NR == 1 { print $1 " (" $2 ")" }' || stat -f -c %T "$WORK")
per_path=$((SIZE_MB * 1048576 / PATHS))
last="p$((PATHS - 1))"
prev="p$((PATHS - 2))"

# --- the flake --------------------------------------------------------------
# p0..p{N-1}: each ~per_path random bytes in $out/data and, from p1 on, the
# previous path in $out/ref (a runtime reference chain). All but the last
# share `salt`; the last has `lastSalt`, so changing it rebuilds only the
# last path. `other` (salt `otherSalt`) holds only a `ref` to p{N-2}: the
# closure of `second` is p0..p{N-2} and `other`.
max_layers_attr=""
[[ -z $MAX_LAYERS ]] || max_layers_attr="maxLayers = $MAX_LAYERS;"
cat > "$FLAKE/flake.nixlike" <<EOF
# generated by bench/image/pack.sh
{ pkgs, ... }:
let
  params = import ./params.nixlike;
  n = $PATHS;
  name = i: "p\${toString i}";
  mk = i: pkgs.runCommand (name i) {
    salt = if i == n - 1 then params.lastSalt else params.salt;
  } (''
    mkdir \$out
    head -c $per_path /dev/urandom > \$out/data
  '' + (if i == 0 then "" else ''
    echo \${ps.\${name (i - 1)}} > \$out/ref
  ''));
  ps = builtins.listToAttrs (builtins.genList (i: { name = name i; value = mk i; }) n);
  other = pkgs.runCommand "other" { salt = params.otherSalt; } ''
    mkdir \$out
    echo \${ps.\${name (n - 2)}} > \$out/ref
  '';
  args = { name = "bench"; tag = params.tag; contents = [ ps.\${name (n - 1)} ]; $max_layers_attr };
in
ps // {
  last = ps.\${name (n - 1)};
  inherit other;
  image = pkgs.dockerTools.buildLayeredImage args;
  stream = pkgs.dockerTools.streamLayeredImage args;
  second = pkgs.dockerTools.streamLayeredImage (args // { name = "bench2"; contents = [ other ]; });
}
EOF
salt="$(date +%s%N)-$RANDOM"
last_salt="$salt-last-0"
other_salt="$salt-other-0"
set_params() { # set_params TAG
    printf '{ salt = "%s"; lastSalt = "%s"; otherSalt = "%s"; tag = "%s"; }\n' "$salt" "$last_salt" "$other_salt" "$1" > "$FLAKE/params.nixlike"
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }

# build_last: builds the chain (or only its changed last path), untimed,
# and roots the last path and its .drv (which keeps every p*.drv and
# busybox), so `mini gc` deletes only images and replaced last paths.
build_last() {
    set_params fixture
    "$M" --store "$STORE" build "$FLAKE#last" -j "$JOBS" -o "$WORK/root-last" --print-out-paths \
        > "$WORK/last.out" 2> "$WORK/last.err" || { tail -n 20 "$WORK/last.err" >&2; fail "building the fixture failed"; }
    local drv
    drv=$("$M" --store "$STORE" derivation show "$FLAKE#last" | sed -n 's/^{"\([^"]*\.drv\)".*/\1/p')
    [[ -n $drv ]] || fail "could not find the .drv of $last"
    "$M" --store "$STORE" store add-root "$WORK/root-drv" "$drv" > /dev/null
    mapfile -t names < <("$M" --store "$STORE" path-info -r "$WORK/root-last" | sed 's|^/mini/store/||')
    [[ ${#names[@]} -eq $PATHS ]] || fail "the closure of $last has ${#names[@]} paths, not $PATHS: ${names[*]}"
    sync
}

# build_other: builds `other` (untimed); the next gc deletes it.
build_other() {
    set_params fixture
    "$M" --store "$STORE" build "$FLAKE#other" --no-link > "$WORK/other.out" 2> "$WORK/other.err" \
        || { tail -n 20 "$WORK/other.err" >&2; fail "building $FLAKE#other failed"; }
    sync
}

# floor: tar of the closure's store directories piped to SHA-256 (under
# /usr/bin/time through bash, for its CPU time); sets t and cpu.
floor() {
    timed floor bash -c 'tar -C "$1" -cf - "${@:2}" | openssl dgst -sha256' floor "$STORE/store" "${names[@]}"
}

# wrap: a command prefix for the profiled runs (strace, perf), else empty.
wrap=()

# timed NAME CMD...: `sync`, then CMD under /usr/bin/time, stdout and
# stderr in $WORK/NAME.{out,err}; sets t (wall s), cpu (user + system s,
# all threads and children) and rss (peak MiB).
timed() {
    local name=$1 a b rc=0 TIMEFORMAT='%3U %3S'
    shift
    sync
    a=$EPOCHREALTIME
    # bash's `time` reads the children's rusage (microseconds; GNU time
    # prints hundredths), and adds no process.
    { time { /usr/bin/time -f '%M' -o "$WORK/rss" "${wrap[@]}" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" || rc=$?; }; } 2> "$WORK/cpu"
    b=$EPOCHREALTIME
    [[ $rc -eq 0 ]] || { tail -n 20 "$WORK/$name.err" >&2; fail "$name: $* failed (exit $rc)"; }
    t=$(secs "$a" "$b")
    rss=$(awk '{ v = $1 } END { printf "%.0f", v / 1024 }' "$WORK/rss")
    cpu=$(awk 'NF == 2 { c = $1 + $2 } END { printf "%.3f", c }' "$WORK/cpu")
}

records() { if [[ -d $STORE/layers/v3 ]]; then find "$STORE/layers/v3" -name '*.json' | wc -l; else echo 0; fi; }

# build_image ATTR DRVNAME TAG: builds FLAKE#ATTR (an image whose
# derivation is named DRVNAME) with the tag TAG, timed. Sets t, rss, path
# (its store path), out (where it is on disk), layers (from the build log)
# and hashed (layers the digest cache gained: those it did not know).
build_image() {
    local attr=$1 drvname=$2 before
    set_params "$3"
    before=$(records)
    timed "$attr" "$M" --store "$STORE" build "$FLAKE#$attr" --no-link --print-out-paths
    grep -q "^building '/mini/store/[^']*-$drvname\.drv'" "$WORK/$attr.err" \
        || fail "$attr was not built (already valid?): $(cat "$WORK/$attr.err")"
    path=$(grep -o "/mini/store/[^ ]*-$drvname" "$WORK/$attr.out" | tail -n 1 || true)
    out="$STORE/store/${path#/mini/store/}"
    [[ -n $path && -e $out ]] || fail "no $drvname in the store from '$(cat "$WORK/$attr.out")'"
    "$M" --store "$STORE" log "$FLAKE#$attr" > "$WORK/$attr.log"
    layers=$(grep -c '^layer ' "$WORK/$attr.log" || true)
    hashed=$(($(records) - before))
}

# holder ATTR NAME: the build log's line for the layer holding store path NAME.
holder() {
    awk -v p="$2" '/^layer / { for (i = 4; i <= NF; i++) if ($i == p) { print; f = 1 } } END { exit !f }' "$WORK/$1.log"
}

# check_archive: the docker-archive's manifest lists $layers layers, and a
# layer holds the last path.
check_archive() {
    local listed
    listed=$(tar -xOf "$out" manifest.json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)[0]["Layers"]))' 2>/dev/null || echo "?")
    [[ $listed == "$layers" ]] || fail "manifest.json lists $listed layers, the build log $layers"
    holder image "$last" > /dev/null || fail "no layer holds $last: $(tail -n 3 "$WORK/image.log")"
}

# check_stream ATTR NAME: the stream image's image.json describes $layers
# layers, and one holds NAME.
check_stream() {
    local described
    described=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["layers"]))' "$out/image.json" 2>/dev/null || echo "?")
    [[ $described == "$layers" ]] || fail "$1's image.json describes $described layers, the build log $layers"
    holder "$1" "$2" > /dev/null || fail "no layer of $1 holds $2: $(tail -n 3 "$WORK/$1.log")"
}

# copy_image: `mini image copy $path oci:$OCI`, timed; sets t, rss,
# written and skipped (as mini reports them), and checks the layout: its
# index tags the image's tag, whose manifest lists $layers layer blobs, each
# there with its size.
copy_image() { # copy_image TAG
    timed copy "$M" --store "$STORE" image copy "$path" "oci:$OCI"
    read -r written skipped < <(sed -n 's/^\([0-9]*\) layers written, \([0-9]*\) already there.*/\1 \2/p' "$WORK/copy.err") \
        || fail "image copy said: $(cat "$WORK/copy.err")"
    python3 - "$OCI" "$1" "$layers" <<'PY' || fail "the OCI layout $OCI is wrong after copying $path"
import json, os, sys
oci, tag, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
blob = lambda d: os.path.join(oci, "blobs", *d.split(":"))
index = json.load(open(os.path.join(oci, "index.json")))
found = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
assert len(found) == 1, f"{len(found)} manifests tagged {tag}"
manifest = json.load(open(blob(found[0]["digest"])))
assert len(manifest["layers"]) == layers, f"{len(manifest['layers'])} layers, not {layers}"
for d in manifest["layers"] + [manifest["config"]]:
    assert os.path.getsize(blob(d["digest"])) == d["size"], d["digest"]
PY
}

collect() { "$M" --store "$STORE" gc > /dev/null; }

echo "mini:    $MINI_SRC (copied to $M)" >&2
echo "work:    $WORK on $FS" >&2
echo "fixture: $PATHS paths x $per_path bytes = $(mib $((PATHS * per_path))) MiB of /dev/urandom, a reference chain p0 <- p1 <- ... <- $last" >&2

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
a=$EPOCHREALTIME
build_last
echo "fixture built in $(secs "$a" "$EPOCHREALTIME") s (not timed)" >&2
closure_bytes=$(du -scb "${names[@]/#/$STORE/store/}" | tail -n 1 | cut -f1)
floor   # warm-up, unmeasured: every store file read once

# Wall times; each has a twin *_cpu with the CPU times of the same runs.
floor_t=() sf_build=() sf_copy=() sf_sum=() lf_t=() sr_build=() sr_copy=() noop_t=() lr_t=() s2_build=() s2_copy=() s2_sum=()
floor_t_cpu=() sf_build_cpu=() sf_copy_cpu=() sf_sum_cpu=() lf_t_cpu=() sr_build_cpu=() sr_copy_cpu=() noop_t_cpu=() lr_t_cpu=() s2_build_cpu=() s2_copy_cpu=() s2_sum_cpu=()
sf_rss=() sc_rss=() lf_rss=() lr_rss=()
sr_hashed=() sr_written=() lr_hashed=() s2_hashed=() s2_written=()
for ((r = 1; r <= ROUNDS; r++)); do
    order=$( ((r % 2)) && echo "floor mini" || echo "mini floor")
    # 1. stream full: build + copy into a fresh OCI layout
    rm -rf "$STORE/layers" "$OCI"
    for who in $order; do
        if [[ $who == floor ]]; then
            floor; floor_t+=("$t") floor_t_cpu+=("$cpu")
            echo "round $r: floor (tar | openssl dgst -sha256) ${t}s" >&2
            continue
        fi
        build_image stream bench-stream "r$r-full"; b=$t bc=$cpu; sf_rss+=("$rss")
        check_stream stream "$last"
        full_layers=$layers full_hashed=$hashed
        copy_image "r$r-full"; sc_rss+=("$rss")
        [[ $written == "$layers" && $skipped == 0 ]] || fail "a copy into a fresh layout wrote $written layers and skipped $skipped, of $layers"
        sf_build+=("$b") sf_copy+=("$t") sf_sum+=("$(add "$b" "$t")")
        sf_build_cpu+=("$bc") sf_copy_cpu+=("$cpu") sf_sum_cpu+=("$(add "$bc" "$cpu")")
        echo "round $r: stream full: build ${b}s ($hashed layers hashed) + copy ${t}s ($written layers written)" >&2
    done
    # 2. layered full
    rm -rf "$STORE/layers"
    for who in $order; do
        if [[ $who == floor ]]; then
            floor; floor_t+=("$t") floor_t_cpu+=("$cpu")
            echo "round $r: floor (tar | openssl dgst -sha256) ${t}s" >&2
            continue
        fi
        build_image image bench.tar "r$r-full"; lf_t+=("$t") lf_t_cpu+=("$cpu"); lf_rss+=("$rss")
        check_archive
        archive_size=$(stat -c %s "$out") archive_layers=$layers archive_hashed=$hashed
        echo "round $r: layered full ${t}s (${rss} MiB peak RSS; $layers layers, $hashed hashed, archive $(mib "$archive_size") MiB)" >&2
        collect
    done
    # 3. stream re-pack
    last_salt="$salt-last-$r-stream"
    build_last
    build_image stream bench-stream "r$r-re"; b=$t bc=$cpu; sr_hashed+=("$hashed")
    check_stream stream "$last"
    copy_image "r$r-re"; sr_written+=("$written")
    sr_build+=("$b") sr_copy+=("$t") sr_build_cpu+=("$bc") sr_copy_cpu+=("$cpu")
    # the same build again: nothing to build, what evaluation alone costs
    timed noop "$M" --store "$STORE" build "$FLAKE#stream" --no-link --print-out-paths
    ! grep -q "^building " "$WORK/noop.err" || fail "a second build of the same stream image built something: $(cat "$WORK/noop.err")"
    noop_t+=("$t") noop_t_cpu+=("$cpu")
    echo "round $r: stream re-pack: build ${b}s ($hashed layer(s) hashed, $(holder stream "$last" | sed 's/sha256:[0-9a-f]* //')) + copy ${sr_copy[-1]}s ($written written, $skipped already there); no-op build ${t}s" >&2
    # 4. layered re-pack
    last_salt="$salt-last-$r-layered"
    build_last
    build_image image bench.tar "r$r-re"; lr_t+=("$t") lr_t_cpu+=("$cpu"); lr_rss+=("$rss"); lr_hashed+=("$hashed")
    check_archive
    echo "round $r: layered re-pack ${t}s (${rss} MiB peak RSS; $hashed layer(s) hashed)" >&2
    collect
    # 5. the second image
    other_salt="$salt-other-$r"
    build_other
    build_image second bench2-stream "r$r-second"; b=$t bc=$cpu; s2_hashed+=("$hashed")
    check_stream second other
    second_layers=$layers
    copy_image "r$r-second"; s2_written+=("$written")
    s2_build+=("$b") s2_copy+=("$t") s2_sum+=("$(add "$b" "$t")")
    s2_build_cpu+=("$bc") s2_copy_cpu+=("$cpu") s2_sum_cpu+=("$(add "$bc" "$cpu")")
    echo "round $r: second image: build ${b}s ($hashed layer(s) hashed) + copy ${t}s ($written written, $skipped already there)" >&2
    collect
done
rm -rf "$OCI"

# --- profiles (not counted) --------------------------------------------------
# Each sets `wrap` (see `timed`) around one build or copy at a time.
phases="" cpu=""
if [[ $use_strace == 1 ]]; then
    rm -rf "$STORE/layers"
    wrap=(strace -f --seccomp-bpf -ttt -T -e trace=openat,rename,renameat2,syncfs,fsync,fdatasync,exit_group -o "$WORK/strace-full")
    build_image image bench.tar profile-strace-full; pf_t=$t
    wrap=()
    collect
    last_salt="$salt-last-strace"
    build_last
    wrap=(strace -f --seccomp-bpf -ttt -T -e trace=openat,rename,renameat2,syncfs,fsync,fdatasync,exit_group -o "$WORK/strace-re")
    build_image image bench.tar profile-strace-re; pr_t=$t
    wrap=()
    collect
    phases=$(python3 - "$WORK/strace-full" "$pf_t" "$WORK/strace-re" "$pr_t" <<'PY'
import re, sys

LINE = re.compile(r'^(\d+)\s+(\d+\.\d+)\s+(.*?)(?: <(\d+\.\d+)>)?$')

def phases(path):
    """Marks in a `strace -f -ttt -T` log of `mini build FLAKE#image`."""
    start = end = None
    looked_up = created = written = reopened = synced = None
    out_name = None
    for line in open(path):
        m = LINE.match(line.rstrip('\n'))
        if not m:
            continue
        ts, rest, took = float(m.group(2)), m.group(3), float(m.group(4) or 0)
        if start is None:
            start = ts
        end = ts
        q = re.search(r'"([^"]*)"', rest)
        name = q.group(1) if q else ''
        if rest.startswith('openat('):
            creating = 'O_CREAT' in rest
            if looked_up is None and '/layers/v3/' in name:
                looked_up = ts
            elif created is None and creating and '/outputs/' in name and name.endswith('-bench.tar'):
                created, out_name = ts, name
            elif created is not None and written is None and ('/layers/v3/' in name or name == out_name):
                written = ts
            if out_name and name == out_name and not creating:
                reopened = reopened or ts
        elif rest.startswith('fsync(') and reopened is not None and synced is None:
            # The first fsync after the output is opened again: the output's.
            synced = ts + took
    marks = [start, looked_up, created, written, reopened, synced, end]
    if any(m is None for m in marks):
        return None
    labels = [
        'evaluate, instantiate, start the build, read the closure (until the digest cache is read)',
        'digest cache look-ups, layer sizes (metadata), customisation layer (until the output is created)',
        'write the docker-archive: tar each layer from the store + SHA-256 (maker threads), BLAKE3 archive hash + write (one thread)',
        'record the new layer digests in the cache',
        'normalise and fsync the output',
        'move into the store, register, exit',
    ]
    return [(label, b - a) for label, a, b in zip(labels, marks, marks[1:])]

full, full_t, re_, re_t = phases(sys.argv[1]), float(sys.argv[2]), phases(sys.argv[3]), float(sys.argv[4])
if full is None or re_ is None:
    print("(phase split unavailable: an strace log lacked a mark)")
    sys.exit(0)
print("| `buildLayeredImage` phase (wall; one run each under strace) | full pack s | % | re-pack s | % |")
print("|---|---:|---:|---:|---:|")
ft, rt = sum(v for _, v in full), sum(v for _, v in re_)
for (label, f), (_, r) in zip(full, re_):
    print(f"| {label} | {f:.3f} | {100 * f / ft:.0f}% | {r:.3f} | {100 * r / rt:.0f}% |")
print(f"| total traced (wall incl. strace start-up: {full_t:.3f} / {re_t:.3f}) | {ft:.3f} | | {rt:.3f} | |")
PY
)
fi
if [[ $use_perf == 1 ]]; then
    perf_wrap() { wrap=(perf record -q -g -e cpu-clock -F 1999 -o "$WORK/perf-$1.data" --); }
    rm -rf "$STORE/layers"
    perf_wrap layered-full; build_image image bench.tar profile-perf-full
    wrap=(); collect
    last_salt="$salt-last-perf"
    build_last
    perf_wrap layered-re; build_image image bench.tar profile-perf-re
    wrap=(); collect
    rm -rf "$STORE/layers" "$OCI"
    perf_wrap stream-full; build_image stream bench-stream profile-perf
    perf_wrap copy-full; copy_image profile-perf
    wrap=(); collect
    rm -rf "$OCI"
    sync
    perf record -q -g -e cpu-clock -F 1999 -o "$WORK/perf-floor.data" -- \
        bash -c 'tar -C "$1" -cf - "${@:2}" | openssl dgst -sha256 > /dev/null' floor "$STORE/store" "${names[@]}" \
        || fail "perf record of the floor failed"
    for run in layered-full layered-re stream-full copy-full floor; do
        perf script -i "$WORK/perf-$run.data" -F comm,tid,period,ip,sym,dso > "$WORK/perf-$run.txt" 2> /dev/null \
            || fail "perf script failed on $WORK/perf-$run.data"
    done
    cpu=$(python3 - "$WORK"/perf-{layered-full,layered-re,stream-full,copy-full,floor}.txt <<'PY'
import re, sys
from collections import Counter

files = sys.argv[1:]
CATEGORIES = [
    'user: SHA-256 (mini: the sha2 crate; floor: libcrypto)',
    'user: BLAKE3 (the store\'s archive hash)',
    'user: memcpy/memmove/memset',
    'user: allocator (mimalloc)',
    'user: other (tar writer, io::copy, channels, evaluation, ...)',
    'kernel: read() (page cache to mini)',
    'kernel: write() (mini to page cache)',
    'kernel: page faults (memory touched for the first time)',
    'kernel: fsync/syncfs',
    'kernel: other system calls (open, stat, mmap, futex, ...)',
    'kernel: other (interrupts, scheduling)',
]

def category(frames):
    leaf = frames[0][1]
    if frames[0][0] >= 0xffff800000000000:
        names = ' '.join(sym for _, sym in frames)
        if 'exc_page_fault' in names:
            return 7
        if re.search(r'\b(ksys_read|vfs_read|ksys_pread64|__x64_sys_read|__x64_sys_pread64)\b', names):
            return 5
        if re.search(r'\b(ksys_write|vfs_write|ksys_pwrite64|__x64_sys_write|__x64_sys_pwrite64)\b', names):
            return 6
        if re.search(r'\b(do_fsync|vfs_fsync_range|sync_filesystem|__x64_sys_syncfs|__x64_sys_fsync)\b', names):
            return 8
        if 'do_syscall_64' in names:
            return 9
        return 10
    if 'sha2::' in leaf or 'libcrypto' in leaf:
        return 0
    if 'blake3' in leaf:
        return 1
    if re.search(r'mem(move|cpy|set)', leaf):
        return 2
    if re.match(r'_?mi_', leaf):
        return 3
    return 4

def profile(path):
    totals = Counter()
    period, frames = None, []
    def flush():
        if period is not None and frames:
            totals[category(frames)] += period
    for line in open(path, errors='replace'):
        if not line.strip():
            continue
        if not line.startswith((' ', '\t')):
            flush()
            parts = line.split()
            period, frames = int(parts[2]), []
        else:
            parts = line.split(None, 1)
            try:
                ip = int(parts[0], 16)
            except ValueError:
                continue
            frames.append((ip, parts[1].strip() if len(parts) > 1 else '?'))
    flush()
    return totals

profiles = [profile(f) for f in files]
names = ['layered full pack', 'layered re-pack', 'stream full: build', 'stream full: copy', 'floor (tar, openssl)']
print("| CPU seconds (`perf record -e cpu-clock`, all threads; one run each) | " + " | ".join(names) + " |")
print("|---|" + "---:|" * len(names))
for i, label in enumerate(CATEGORIES):
    cells = []
    for p in profiles:
        total = sum(p.values())
        cells.append(f"{p[i] / 1e9:.3f} ({100 * p[i] / total:.0f}%)" if total else "-")
    if any(p[i] for p in profiles):
        print(f"| {label} | " + " | ".join(cells) + " |")
print("| **CPU total** | " + " | ".join(f"**{sum(p.values()) / 1e9:.3f}**" for p in profiles) + " |")
PY
)
fi

# --- the tables -----------------------------------------------------------------
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
span() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print (lo == hi ? lo : lo "–" hi) }'; }
mbps() { awk -v b="$closure_bytes" -v s="$1" 'BEGIN { printf "%.0f", b / 1048576 / s }'; }

# row CASE COMMAND VALUES BASE BASE-LABEL UNIT TARGET: a table row.
# VALUES and BASE name arrays of wall times (each with its *_cpu twin);
# BASE "" for none. UNIT x (a ratio) or % (a share); TARGET the largest
# ratio or share that meets it ("" for none). Ratios are best / best and
# median / median. The verdict goes by the median wall-time ratio, with
# "(best meets)" when only the best one does.
row() {
    local -n vals=$3 cvals=${3}_cpu
    local b m c shown="" cshown="" verdict="" target="" rb rm rc
    b=$(best "${vals[@]}") m=$(median "${vals[@]}") c=$(median "${cvals[@]}")
    if [[ -n $4 ]]; then
        local -n base=$4 cbase=${4}_cpu
        local bb bm bc
        bb=$(best "${base[@]}") bm=$(median "${base[@]}") bc=$(median "${cbase[@]}")
        if [[ $6 == x ]]; then
            rb=$(awk -v a="$b" -v c="$bb" 'BEGIN { printf "%.2f", a / c }') rm=$(awk -v a="$m" -v c="$bm" 'BEGIN { printf "%.2f", a / c }')
            rc=$(awk -v a="$c" -v c="$bc" 'BEGIN { printf "%.2f", a / c }')
            shown="${rb}x / ${rm}x" cshown="${rc}x"
            [[ -z $7 ]] || target="≤ ${7}x"
        else
            rb=$(awk -v a="$b" -v c="$bb" 'BEGIN { printf "%.1f", 100 * a / c }') rm=$(awk -v a="$m" -v c="$bm" 'BEGIN { printf "%.1f", 100 * a / c }')
            rc=$(awk -v a="$c" -v c="$bc" 'BEGIN { printf "%.1f", 100 * a / c }')
            shown="${rb}% / ${rm}%" cshown="${rc}%"
            [[ -z $7 ]] || target="≤ ${7}%"
        fi
        if [[ -n $7 ]]; then
            if awk -v r="$rm" -v t="$7" 'BEGIN { exit !(r <= t) }'; then verdict=met
            elif awk -v r="$rb" -v t="$7" 'BEGIN { exit !(r <= t) }'; then verdict="missed (best meets)"
            else verdict=missed; fi
        fi
    fi
    echo "| $1 | $2 | $b | $m | $c | $5 | $shown | $cshown | $target | $verdict |"
}
sbb=$(best "${sf_build[@]}") sbm=$(median "${sf_build[@]}") scb=$(best "${sf_copy[@]}") scm=$(median "${sf_copy[@]}")
lfb=$(best "${lf_t[@]}") lfm=$(median "${lf_t[@]}")
fb=$(best "${floor_t[@]}") fm=$(median "${floor_t[@]}")
layered_target=1.5 layered_note=""
if [[ $FS != ext4* ]]; then layered_target="" layered_note=" (target is for ext4)"; fi
table=$(
    echo "| case | timed command | best s | median s | CPU s (median) | compared with | ratio best / median | CPU ratio (medians) | target | |"
    echo "|---|---|---:|---:|---:|---|---:|---:|---|---|"
    row "floor" "\`tar -C S/store -c <$PATHS names> \\| openssl dgst -sha256\` ($((2 * ROUNDS)) runs)" floor_t "" "" "" ""
    row "**stream full**: build + copy" "the two below, together" sf_sum floor_t floor x 1.2
    row "  stream full: build" "\`mini build F#stream\` (digest cache empty)" sf_build floor_t floor x ""
    row "  stream full: copy" "\`mini image copy RESULT oci:NEW\`" sf_copy floor_t floor x ""
    row "**stream re-pack**: build" "\`mini build F#stream\` ($last changed)" sr_build sf_build "stream full: build" % 5
    row "  for reference: no-op build" "\`mini build F#stream\` again (valid: evaluation only)" noop_t sf_build "stream full: build" % ""
    row "**stream re-pack**: copy" "\`mini image copy RESULT oci:SAME\`" sr_copy sf_copy "stream full: copy" % 5
    row "**layered full**$layered_note" "\`mini build F#image\` (digest cache empty)" lf_t floor_t floor x "$layered_target"
    row "**layered re-pack**" "\`mini build F#image\` ($last changed)" lr_t lf_t "layered full" % ""
    row "**second image**: build + copy" "the two below, together" s2_sum sf_sum "stream full: build + copy" % 5
    row "  second image: build" "\`mini build F#second\` (cache warm)" s2_build sf_build "stream full: build" % ""
    row "  second image: copy" "\`mini image copy RESULT oci:SAME\`" s2_copy sf_copy "stream full: copy" % ""
    echo
    echo "- throughput (best): floor $(mbps "$fb") MiB/s; stream full build $(mbps "$sbb") MiB/s, copy $(mbps "$scb") MiB/s; layered full $(mbps "$lfb") MiB/s"
    echo "- layers: $full_layers per image ($((full_layers - 1)) store-path layers + the customisation layer; the two least popular paths share one); layers hashed (digest cache records gained): stream full $full_hashed, stream re-pack $(span "${sr_hashed[@]}"), layered full $archive_hashed, layered re-pack $(span "${lr_hashed[@]}"), second image $(span "${s2_hashed[@]}")"
    echo "- layer blobs \`image copy\` wrote: full $full_layers of $full_layers, re-pack $(span "${sr_written[@]}"), second image $(span "${s2_written[@]}") of $second_layers (layers the layout lacked: the one holding the new path, any grouping paths unlike the first image, and the customisation layer, whose links name the new path)"
    echo "- docker-archive: $(mib "$archive_size") MiB, $archive_layers layers; the stream image: three small files"
    echo "- peak RSS (MiB): stream full build $(span "${sf_rss[@]}"), full copy $(span "${sc_rss[@]}"), layered full $(span "${lf_rss[@]}"), layered re-pack $(span "${lr_rss[@]}")"
    echo "- CPU time: user + system of the command and its threads and children, from bash's \`time\` (the floor's includes \`bash -c\`); steadier than wall time on a shared machine, but it does not see a process waiting for the disk"
    echo "- rounds (s): floor ${floor_t[*]}; stream full build ${sf_build[*]}, copy ${sf_copy[*]}; stream re-pack build ${sr_build[*]}, copy ${sr_copy[*]}; no-op build ${noop_t[*]}; layered full ${lf_t[*]}; layered re-pack ${lr_t[*]}; second image build ${s2_build[*]}, copy ${s2_copy[*]}"
    if [[ -n $phases ]]; then echo; echo "$phases"; fi
    if [[ -n $cpu ]]; then
        echo
        echo "$cpu"
        busy() { awk -v c="$1" -v w="$2" 'BEGIN { printf "%.2f", c / w }'; }
        read -r c1 c2 c3 c4 c5 < <(sed -n 's/^| \*\*CPU total\*\* | //p' <<< "$cpu" | tr -d '*|')
        echo "| cores busy: CPU total / the median wall time of the rounds | $(busy "$c1" "$lfm") | $(busy "$c2" "$(median "${lr_t[@]}")") | $(busy "$c3" "$sbm") | $(busy "$c4" "$scm") | $(busy "$c5" "$fm") |"
    fi
)
echo
echo "$table"

if [[ $record -ne 0 ]]; then
    rev=${MINI_REV:-}
    if [[ -z $rev ]]; then
        rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
        if [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null | head -n 1)" ]]; then rev="$rev (dirty tree)"; fi
    fi
    cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
    section=$(
        echo "## \`TMPDIR=$parent\`: $FS"
        echo
        echo "Generated by \`bench/image/pack.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
        echo
        echo "- machine: ${cpu_model:-unknown CPU}, $(nproc) cores, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r); load average (1, 5, 15 min) $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
        echo "- mini: \`${MINI_SRC#"$REPO"/}\` built from commit $rev; $(openssl version | cut -d' ' -f1-2), $(tar --version | head -n 1)"
        echo "- fixture: $PATHS store paths, each $per_path bytes of /dev/urandom plus a \`ref\` file naming the previous path; images: \`dockerTools.{buildLayeredImage,streamLayeredImage} { contents = [ $last ]; ${max_layers_attr:-maxLayers = 100 (default);} }\`, and the second \`streamLayeredImage { contents = [ other ]; }\` (\`other\`: a ref to $prev)"
        echo "- $ROUNDS rounds; wall time from bash's \$EPOCHREALTIME around each command, \`sync\` before each, page cache warm"
        echo
        echo "$table"
    )
    if [[ $record -eq 1 || ! -f $RESULTS_FILE ]]; then
        { echo "# Image benchmark: last results"; echo; echo "$section"; } > "$RESULTS_FILE"
    else
        { echo; echo "$section"; } >> "$RESULTS_FILE"
    fi
    echo "recorded in $RESULTS_FILE" >&2
fi
