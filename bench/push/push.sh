#!/usr/bin/env bash
# Registry push benchmark: `mini push` of the quotes example image to a
# local docker-registry (plain HTTP on 127.0.0.1, storage in the work
# directory), against `skopeo copy docker-archive:… docker://…` of the same
# image file to the same registry, in the same run.
#
# Usage: bench/push/push.sh [--record]
#   --record   also write the table to bench/push/last-results.md
#
# Environment:
#   MINI     mini binary (default: $REPO/target/release/mini; never built
#            here, copied into the work directory first)
#   ROUNDS   rounds (default 5); the table gives the best and the median
#   KEEP=1   keep the work directory (default: deleted at exit)
#
# Each round, with a fresh repository name (so nothing is on the registry
# under it) and mini's push cache (<store>/push-blobs, push-cache.json)
# deleted for the cold runs:
#   cold   mini push / skopeo copy to a new, empty registry directory
#   warm   the same push again: every blob is already there
#   change one package changed (quotes.txt edited): mini push of the new
#          image to the same repository; bytes sent are checked against
#          the layers that changed + 10 KB
# The no-change re-push target is < 0.3 s.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${ROUNDS:-5}
RECORD=${1:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mini-push-bench.XXXXXX")
cleanup() {
    [ -n "${REGISTRY_PID:-}" ] && kill "$REGISTRY_PID" 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || { chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"; }
}
trap cleanup EXIT

MINI_SRC=${MINI:-$REPO/target/release/mini}
cp "$MINI_SRC" "$WORK/mini"
MINI="$WORK/mini"
STORE="$WORK/store"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HOST="127.0.0.1:$PORT"

cat > "$WORK/registry.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: $HOST
YAML
/usr/bin/docker-registry serve "$WORK/registry.yml" >/dev/null 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do curl -fs "http://$HOST/v2/" >/dev/null && break; sleep 0.1; done

# The two images: the example, and a copy with one quote added.
mkdir -p "$WORK/changed"
cp "$REPO/examples/quotes/flake.nixlike" "$WORK/changed/"
{ cat "$REPO/examples/quotes/quotes.txt"; echo "The answer is 42."; } > "$WORK/changed/quotes.txt"
image=$("$MINI" --store "$STORE" build "$REPO/examples/quotes#docker" --no-link --print-out-paths)
IMAGE="$STORE/store/${image#/mini/store/}"
"$MINI" --store "$STORE" build "$WORK/changed#docker" --no-link >/dev/null

now() { date +%s.%N; }
# secs CMD...: runs CMD (output to $WORK/out) and prints its wall time.
secs() { local t0; t0=$(now); "$@" > "$WORK/out" 2>&1; echo "$(now) - $t0" | bc; }
mini_push() { "$MINI" --store "$STORE" push --insecure "$1" "docker://$HOST/$2"; }
skopeo_push() { skopeo copy --quiet --dest-tls-verify=false "docker-archive:$IMAGE" "docker://$HOST/$1"; }
sent() { tail -1 "$WORK/out" | sed 's/.*: \([0-9]*\) bytes sent/\1/'; }

declare -A T
for round in $(seq "$ROUNDS"); do
    rm -rf "$STORE/push-blobs" "$STORE/push-cache.json"
    T[mini_cold]+=" $(secs mini_push "$IMAGE" "m$round:latest")"
    T[mini_warm]+=" $(secs mini_push "$IMAGE" "m$round:latest")"
    T[skopeo_cold]+=" $(secs skopeo_push "s$round:latest")"
    T[skopeo_warm]+=" $(secs skopeo_push "s$round:latest")"
    T[mini_change]+=" $(secs mini_push "$WORK/changed#docker" "m$round:latest")"
    uploaded=$(awk '$1 == "uploaded" { n += $3 } END { print n + 0 }' "$WORK/out")
    bytes=$(sent)
    # Layers that changed: those uploaded other than the config (the first line).
    layers=$(awk '$1 == "uploaded" && NR > 1 { n += $3 } END { print n + 0 }' "$WORK/out")
    CHANGE="uploaded $uploaded bytes of blobs in $(grep -c '^uploaded' "$WORK/out") blobs; $bytes bytes sent in all; changed layers $layers bytes"
    [ "$bytes" -le $((layers + 10240)) ] || { echo "change: $bytes bytes sent > changed layers $layers + 10 KB" >&2; exit 1; }
    rm -rf "$STORE/push-blobs" "$STORE/push-cache.json"
done

stats() { tr ' ' '\n' <<< "$1" | grep . | sort -n | awk '{ a[NR] = $1 } END { printf "%.3f | %.3f", a[1], a[int((NR + 1) / 2)] }'; }
table=$(cat <<MD
| run | best (s) | median (s) |
|---|---|---|
| mini push, cold (compress + upload) | $(stats "${T[mini_cold]}") |
| skopeo copy docker-archive, cold | $(stats "${T[skopeo_cold]}") |
| mini push, nothing changed | $(stats "${T[mini_warm]}") |
| skopeo copy docker-archive, nothing changed | $(stats "${T[skopeo_warm]}") |
| mini push, one package changed | $(stats "${T[mini_change]}") |

One-package change (last round): $CHANGE.
MD
)
echo "$table"
if [ "$RECORD" = --record ]; then
    {
        echo "# Push benchmark: last results"
        echo
        echo "\`bench/push/push.sh --record\`, $ROUNDS rounds, $(date -u +%Y-%m-%d), $(nproc) cores, registry: Debian docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null), skopeo $(skopeo --version | awk '{print $3}'), mini: \`${MINI_SRC#$REPO/}\`."
        echo
        echo "$table"
    } > "$REPO/bench/push/last-results.md"
fi
