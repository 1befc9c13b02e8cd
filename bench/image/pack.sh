#!/usr/bin/env bash
# Image packing benchmark: `mini build FLAKE#image` of a layered image of a
# synthetic closure ($PATHS store paths, default 100, holding $SIZE_MB MiB of
# random, incompressible bytes in all, default 1000, each path referring to
# the one before it) against the floor of the same work done by standard
# tools in the same run: `tar -c` of the same store paths piped to
# `openssl dgst -sha256`. Then the re-pack: the last path of the chain
# changes and the image is built again with every other path's layer still
# in the layer cache.
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
#   ROUNDS      rounds (default 3); the tables give the best and the median
#   PATHS       store paths in the closure (default 100)
#   SIZE_MB     MiB of random data in all (default 1000), split evenly
#   MAX_LAYERS  the image's maxLayers (default: unset, dockerTools' 100)
#   JOBS        -j for building the fixture (default 2)
#   PROFILE     1 (default): after the rounds, one more full pack and one
#               more re-pack under `strace -f` (only openat, rename, syncfs
#               and fsync traced), for a breakdown of where mini's time
#               goes; 0 skips it. Not counted in the rounds.
#   KEEP=1      keep the work directory (default: deleted at exit)
#   TMPDIR      where the work directory goes (default /tmp); needs about
#               3.3 x SIZE_MB MiB free. On tmpfs (/dev/shm) mini's syncfs
#               costs nothing; on a disk it writes the layer cache and the
#               image out before the build returns.
#
# Each round:
#   1. full pack: the layer cache (<store>/layers) deleted, an image tag not
#      built before, `mini --store S build FLAKE#image --no-link`; and the
#      floor `tar -C S/store -c <the closure's base names> | openssl dgst
#      -sha256`, in alternating order. `sync` before each, page cache warm
#      (everything was read or written just before).
#   2. re-pack: the last path gets a new salt and is rebuilt (not timed),
#      then the image again with a new tag (timed); the layer cache holds
#      every other path's layer.
#   After each image build, `mini gc` (roots: the last path and its .drv)
#   deletes the image, so at most one image is on disk.
#
# Needs openssl, GNU tar, /usr/bin/time (Debian `time`), python3, and
# strace for the breakdown.
#
# Exit status: 0 when every build succeeded (whether or not the targets
# are met), 1 if a build failed or gave a wrong result, 2 on setup errors.
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
[[ $PATHS -ge 2 ]] || die "PATHS must be at least 2"
[[ -x $MINI_SRC ]] || die "mini binary $MINI_SRC not found (cargo build --release)"
command -v openssl >/dev/null || die "openssl not found"
command -v tar >/dev/null || die "tar not found"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install -y time)"
if [[ $PROFILE == 1 ]] && ! command -v strace >/dev/null; then
    echo "pack.sh: strace not found; no breakdown (apt-get install -y strace)" >&2
    PROFILE=0
fi
command -v python3 >/dev/null || die "python3 not found (it reads the image's manifest.json and the strace logs)"

parent=${TMPDIR:-/tmp}
need_kb=$((SIZE_MB * 1024 * 33 / 10 + 200 * 1024))
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
mkdir -p "$FLAKE"
FS=$(findmnt -no FSTYPE,OPTIONS -T "$WORK" 2>/dev/null | awk 'NR == 1 { print $1 " (" $2 ")" }' || stat -f -c %T "$WORK")
per_path=$((SIZE_MB * 1048576 / PATHS))
last="p$((PATHS - 1))"

# --- the flake --------------------------------------------------------------
# p0..p{N-1}: each ~per_path random bytes in $out/data and, from p1 on, the
# previous path in $out/ref (a runtime reference chain). All but the last
# share `salt`; the last has `lastSalt`, so changing it rebuilds only the
# last path. `image`: dockerTools.buildLayeredImage of the last path.
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
in
ps // {
  last = ps.\${name (n - 1)};
  image = pkgs.dockerTools.buildLayeredImage {
    name = "bench";
    tag = params.tag;
    contents = [ ps.\${name (n - 1)} ];
    $max_layers_attr
  };
}
EOF
salt="$(date +%s%N)-$RANDOM"
last_salt="$salt-last-0"
set_params() { # set_params TAG
    printf '{ salt = "%s"; lastSalt = "%s"; tag = "%s"; }\n' "$salt" "$last_salt" "$1" > "$FLAKE/params.nixlike"
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
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
}

# floor: tar of the closure's store directories piped to SHA-256; sets t.
floor() {
    sync
    local a b
    a=$EPOCHREALTIME
    tar -C "$STORE/store" -cf - "${names[@]}" | openssl dgst -sha256 > "$WORK/floor.out"
    b=$EPOCHREALTIME
    t=$(secs "$a" "$b")
}

count_tars() { if [[ -d $STORE/layers ]]; then find "$STORE/layers" -name '*.tar' | wc -l; else echo 0; fi; }

# pack TAG [strace output]: builds the image; sets t, rss (MiB), out (its
# physical path), size, layers, packed (layer tars the cache gained).
pack() {
    set_params "$1"
    local before a b rc=0
    before=$(count_tars)
    local cmd=("$M" --store "$STORE" build "$FLAKE#image" --no-link --print-out-paths)
    if [[ -n ${2:-} ]]; then
        cmd=(strace -f --seccomp-bpf -ttt -T -e trace=openat,rename,renameat2,syncfs,fsync,fdatasync,exit_group -o "$2" "${cmd[@]}")
    fi
    sync
    a=$EPOCHREALTIME
    /usr/bin/time -f '%M' -o "$WORK/rss" "${cmd[@]}" > "$WORK/image.out" 2> "$WORK/image.err" || rc=$?
    b=$EPOCHREALTIME
    [[ $rc -eq 0 ]] || { tail -n 20 "$WORK/image.err" >&2; fail "mini build of the image failed (exit $rc)"; }
    t=$(secs "$a" "$b")
    rss=$(awk '{ v = $1 } END { printf "%.0f", v / 1024 }' "$WORK/rss")
    grep -q "^building '.*-bench.tar.drv'" "$WORK/image.err" || fail "the image was not built (already valid?): $(cat "$WORK/image.err")"
    local path; path=$(grep -o '/mini/store/[^ ]*-bench.tar' "$WORK/image.out" | tail -n 1 || true)
    out="$STORE/store/${path#/mini/store/}"
    [[ -n $path && -f $out ]] || fail "no image file from '$(cat "$WORK/image.out")'"
    size=$(stat -c %s "$out")
    "$M" --store "$STORE" log "$FLAKE#image" > "$WORK/image.log"
    layers=$(grep -c '^layer ' "$WORK/image.log" || true)
    packed=$(($(count_tars) - before))
}

# check_image: the archive is a tar whose manifest lists $layers layers and
# whose last store-path layer holds the current last path.
check_image() {
    local listed
    listed=$(tar -xOf "$out" manifest.json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)[0]["Layers"]))' 2>/dev/null || echo "?")
    [[ $listed == "$layers" ]] || fail "manifest.json lists $listed layers, the build log $layers"
    holder "$last" > /dev/null || fail "no layer holds $last: $(tail -n 3 "$WORK/image.log")"
}

# holder NAME: the build log's line for the layer holding store path NAME.
holder() {
    awk -v p="$1" '/^layer / { for (i = 4; i <= NF; i++) if ($i == p) { print; f = 1 } } END { exit !f }' "$WORK/image.log"
}

collect() { "$M" --store "$STORE" gc > /dev/null; }

echo "mini:    $MINI_SRC (copied to $M)" >&2
echo "work:    $WORK on $FS" >&2
echo "fixture: $PATHS paths x $per_path bytes = $(mib $((PATHS * per_path))) MiB of /dev/urandom, a reference chain p0 <- p1 <- ... <- $last" >&2

a=$EPOCHREALTIME
build_last
sync
echo "fixture built in $(secs "$a" "$EPOCHREALTIME") s (not timed)" >&2
closure_bytes=$(du -scb "${names[@]/#/$STORE/store/}" | tail -n 1 | cut -f1)
floor   # warm-up, unmeasured: every store file read once
floor_sum=$(cut -d' ' -f2 "$WORK/floor.out")

floor_t=() full_t=() re_t=() full_rss=() re_rss=() re_packed=()
for ((r = 1; r <= ROUNDS; r++)); do
    rm -rf "$STORE/layers"
    for who in $( ((r % 2)) && echo "floor mini" || echo "mini floor"); do
        if [[ $who == floor ]]; then
            floor; floor_t+=("$t")
            echo "round $r: floor (tar | openssl dgst -sha256) ${t}s" >&2
        else
            pack "r$r-full"; full_t+=("$t"); full_rss+=("$rss")
            check_image
            full_size=$size full_layers=$layers full_packed=$packed
            echo "round $r: mini full pack ${t}s (${rss} MiB peak RSS; $layers layers, $packed packed into the cache, image $(mib "$size") MiB)" >&2
            collect
        fi
    done
    last_salt="$salt-last-$r"
    build_last
    sync
    pack "r$r-re"; re_t+=("$t"); re_rss+=("$rss"); re_packed+=("$packed")
    check_image
    echo "round $r: mini re-pack   ${t}s (${rss} MiB peak RSS; $packed layer(s) packed, $(holder "$last" | sed 's/sha256:[0-9a-f]* //'))" >&2
    collect
done

# --- breakdown ----------------------------------------------------------------
breakdown=""
if [[ $PROFILE == 1 ]]; then
    rm -rf "$STORE/layers"
    pack "profile-full" "$WORK/strace-full"; pf_t=$t
    collect
    last_salt="$salt-last-profile"
    build_last
    sync
    pack "profile-re" "$WORK/strace-re"; pr_t=$t
    collect
    breakdown=$(python3 - "$WORK/strace-full" "$pf_t" "$WORK/strace-re" "$pr_t" <<'PY'
import re, sys

LINE = re.compile(r'^(\d+)\s+(\d+\.\d+)\s+(.*)$')

def phases(path):
    """Marks in a `strace -f -ttt -T` log of `mini build FLAKE#image`."""
    start = end = None
    cache = custom = archive = None
    out_reads = []
    out_name = None
    for line in open(path):
        m = LINE.match(line)
        if not m:
            continue
        ts, rest = float(m.group(2)), m.group(3)
        if start is None:
            start = ts
        end = ts
        if rest.startswith('openat('):
            q = re.search(r'"([^"]*)"', rest)
            name = q.group(1) if q else ''
            creating = 'O_CREAT' in rest
            if cache is None and '/layers/' in name:
                cache = ts
            elif creating and name.endswith('/layer.tar') and custom is None:
                custom = ts
            elif creating and '/root/mini/store/' in name and name.endswith('-bench.tar') and archive is None:
                archive, out_name = ts, name
            elif out_name and name == out_name and not creating:
                out_reads.append(ts)
    # The output file is then opened by the archive hash (once per piece,
    # several threads) and, last, to fsync it. (The image builder declares
    # its references, so the output is not scanned.)
    hashing = out_reads[0] if out_reads else None
    sync_start = out_reads[-1] if len(out_reads) > 1 else None
    marks = [start, cache, archive, hashing, sync_start, end]
    if any(m is None for m in marks):
        return None
    return [
        ('evaluate, instantiate, plan (until the layer cache is opened)', cache - start),
        ('store-path layers: tar + SHA-256 into the layer cache, and the customisation layer', archive - cache),
        ('docker archive: copy the layers into the output (copy_file_range), canonicalise', hashing - archive),
        ('archive hash of the output (BLAKE3, normalise)', sync_start - hashing),
        ('fsync of the output, move into the store, register, exit', end - sync_start),
    ]

full, full_t, re_, re_t = phases(sys.argv[1]), float(sys.argv[2]), phases(sys.argv[3]), float(sys.argv[4])
if full is None or re_ is None:
    print("(breakdown unavailable: the strace log lacked a mark)")
    sys.exit(0)
print("| phase (one profiled run, under strace) | full pack s | % | re-pack s | % |")
print("|---|---:|---:|---:|---:|")
ft, rt = sum(v for _, v in full), sum(v for _, v in re_)
for (label, f), (_, r) in zip(full, re_):
    print(f"| {label} | {f:.3f} | {100 * f / ft:.0f}% | {r:.3f} | {100 * r / rt:.0f}% |")
print(f"| total traced (wall, incl. strace start-up: {full_t:.3f} / {re_t:.3f}) | {ft:.3f} | | {rt:.3f} | |")
PY
)
fi

# --- the tables -----------------------------------------------------------------
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }
span() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print (lo == hi ? lo : lo "–" hi) }'; }
mbps() { awk -v b="$closure_bytes" -v s="$1" 'BEGIN { printf "%.0f", b / 1048576 / s }'; }

fb=$(best "${floor_t[@]}") fm=$(median "${floor_t[@]}")
mb=$(best "${full_t[@]}") mm=$(median "${full_t[@]}")
rb=$(best "${re_t[@]}") rd=$(median "${re_t[@]}")
table=$(
    echo "| $PATHS paths, $(mib "$closure_bytes") MiB | floor s (tar \\| openssl sha256) | mini full pack s | ratio (mini/floor) | mini re-pack s (1 path changed) | re-pack / full pack |"
    echo "|---|---:|---:|---:|---:|---:|"
    echo "| best of $ROUNDS | $fb | $mb | $(ratio "$mb" "$fb") | $rb | $(pct "$rb" "$mb") |"
    echo "| median of $ROUNDS | $fm | $mm | $(ratio "$mm" "$fm") | $rd | $(pct "$rd" "$mm") |"
    echo
    echo "- throughput (best): floor $(mbps "$fb") MiB/s, mini full pack $(mbps "$mb") MiB/s"
    echo "- image: $(mib "$full_size") MiB docker-archive (uncompressed layers), $full_layers layers ($((full_layers - 1)) store-path layers + the customisation layer); layer tars packed into the cache: $full_packed by a full pack, $(span "${re_packed[@]}") by a re-pack"
    echo "- mini's peak RSS: full pack $(span "${full_rss[@]}") MiB, re-pack $(span "${re_rss[@]}") MiB"
    echo "- rounds: floor ${floor_t[*]} s; full pack ${full_t[*]} s; re-pack ${re_t[*]} s"
    if [[ -n $breakdown ]]; then
        echo
        echo "$breakdown"
    fi
)
echo
echo "$table"
echo
echo "targets: full pack <= 1.50x the floor; re-pack <= 15% of a full pack"

if [[ $record -ne 0 ]]; then
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -n 1)" ]]; then rev="$rev (dirty)"; fi
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
    section=$(
        echo "## \`TMPDIR=$parent\`: $FS"
        echo
        echo "Generated by \`bench/image/pack.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
        echo
        echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
        echo "- mini: \`${MINI_SRC#"$REPO"/}\`, commit $rev; $(openssl version | cut -d' ' -f1-2), $(tar --version | head -n 1)"
        echo "- fixture: $PATHS store paths, each $per_path bytes of /dev/urandom plus a \`ref\` file naming the previous path; image: \`dockerTools.buildLayeredImage { contents = [ $last ]; ${max_layers_attr:-maxLayers = 100 (default);} }\`"
        echo "- $ROUNDS rounds; wall time from bash's \$EPOCHREALTIME around each command, \`sync\` before each, page cache warm"
        echo
        echo "$table"
    )
    if [[ $record -eq 1 || ! -f $RESULTS_FILE ]]; then
        { echo "# Image packing benchmark: last results"; echo; echo "$section"; } > "$RESULTS_FILE"
    else
        { echo; echo "$section"; } >> "$RESULTS_FILE"
    fi
    echo "recorded in $RESULTS_FILE" >&2
fi
