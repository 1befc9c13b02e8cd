#!/usr/bin/env bash
# Store add throughput: `mini store add` of a 1 GB tree of 10 000 files
# against the physical floor of the same work done by standard tools,
# `b3sum` over every file plus `cp -r` of the tree, in the same run.
#
#   bench/store/add.sh            # 1 GB, 10 000 files, best of 3
#   SIZE_MB=200 FILES=2000 RUNS=5 bench/store/add.sh
#
# Target: mini's throughput at least 0.7x the peer's, i.e.
# (b3sum s + cp s) / mini s >= 0.70.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
MINI=${MINI:-$REPO/target/release/mini}
SIZE_MB=${SIZE_MB:-1000}
FILES=${FILES:-10000}
RUNS=${RUNS:-3}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mini-bench-add.XXXXXX")}
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

command -v b3sum >/dev/null || { echo "add.sh: b3sum not found (apt-get install b3sum)" >&2; exit 2; }
[ -x "$MINI" ] || (cd "$REPO" && cargo build --release >&2)

tree="$WORK/tree"
per_file=$((SIZE_MB * 1024 * 1024 / FILES))
echo "making $FILES files of $per_file bytes in 100 directories..." >&2
python3 - "$tree" "$FILES" "$per_file" <<'PY'
import os, sys
root, files, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = os.urandom(1 << 20)
for i in range(files):
    d = os.path.join(root, f"d{i % 100:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        left, off = size, (i * 7919) % (1 << 19)
        while left:
            n = min(left, len(block) - off)
            f.write(block[off:off + n]); left -= n; off = 0
PY
bytes=$(du -sb "$tree" | cut -f1)
# Warm the page cache so every contender reads from memory.
cat "$tree"/*/* > /dev/null

now() { date +%s.%N; }
best() { sort -g | head -n 1; }

peer_times=()
mini_times=()
for ((i = 1; i <= RUNS; i++)); do
    t0=$(now)
    find "$tree" -type f -print0 | xargs -0 b3sum > /dev/null
    t1=$(now)
    cp -r "$tree" "$WORK/copy$i"
    t2=$(now)
    peer_times+=("$(awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "%.3f %.3f", b - a, c - b }')")
    rm -rf "$WORK/copy$i"
    sync

    t0=$(now)
    "$MINI" --store "$WORK/store$i" store add "$tree" --name tree > /dev/null 2>&1
    t1=$(now)
    mini_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
    chmod -R u+w "$WORK/store$i"; rm -rf "$WORK/store$i"
    sync
done

peer_best=$(printf '%s\n' "${peer_times[@]}" | awk '{ printf "%.3f %s %s\n", $1 + $2, $1, $2 }' | sort -g | head -n 1)
read -r peer_s b3_s cp_s <<< "$peer_best"
mini_s=$(printf '%s\n' "${mini_times[@]}" | best)
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1048576 }')
echo
echo "| tree | b3sum s | cp -r s | peer s | peer MB/s | mini s | mini MB/s | throughput ratio (mini/peer) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
awk -v mb="$mb" -v f="$FILES" -v b3="$b3_s" -v cp="$cp_s" -v p="$peer_s" -v m="$mini_s" \
    'BEGIN { printf "| %d MiB, %d files | %.3f | %.3f | %.3f | %.0f | %.3f | %.0f | %.2fx |\n", mb, f, b3, cp, p, mb / p, m, mb / m, p / m }'
