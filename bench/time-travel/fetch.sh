#!/usr/bin/env bash
# Time-travel benchmark: bringing a past git revision into the store.
# The repository is this project's own tree (every tracked file at HEAD,
# ~1000 files, ~5 MB) committed twice; the benchmark fetches the older
# commit, A, by its hash:
#
#   mini:  mini derivation show 'git+file://REPO?rev=A#default'
#          (git rev-parse, git archive, unpack, add to the store by content,
#          evaluate the flake and write its .drv)
#   Nix:   nix-instantiate --read-write-mode --eval
#            -E '(builtins.fetchGit { url = "file://REPO"; rev = "A"; }).outPath'
#          (Nix 2.8: a fetch into its git cache, a checkout, added to the
#          store by NAR hash)
#
# Each round is "cold" (an empty store and, for Nix, an empty git cache)
# then "cached" (the same again: mini finds the revision in
# <store>/git-revs and runs no git; Nix finds it in its fetcher cache).
# Both run in the same round, alternating which goes first.
#
# Usage: bench/time-travel/fetch.sh [--record]
#   --record   also write the table to bench/time-travel/last-results.md
# Environment: MINI (default target/release/mini, never built here),
#   ROUNDS (default 5), KEEP=1 (keep the work directory), TMPDIR.
#
# Needs root (Nix runs in a private mount namespace with an empty
# directory over /nix, as in bench/build/dag.sh), git, util-linux
# `unshare` and `nix-bin` (Nix 2.8).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/../.." && pwd)
MINI=${MINI:-$REPO_ROOT/target/release/mini}
ROUNDS=${ROUNDS:-5}
RESULTS_FILE="$BENCH_DIR/last-results.md"
record=0
for arg in "$@"; do
    case $arg in
        --record) record=1 ;;
        *) echo "usage: $0 [--record]" >&2; exit 2 ;;
    esac
done
die() { echo "fetch.sh: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "must run as root (the private /nix mount needs it)"
# The private /nix needs a mount point; a fresh machine with nix-bin may
# have none. An empty directory is all that is ever made there.
[[ -d /nix ]] || mkdir /nix || die "cannot create the mount point /nix"
[[ -x $MINI ]] || die "no mini at $MINI (cargo build --release first)"
command -v nix-instantiate >/dev/null || die "nix-instantiate not found; apt-get install -y nix-bin"
command -v git >/dev/null || die "git not found"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mini-bench-tt.XXXXXX")
[[ ${KEEP:-0} == 1 ]] || trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

# --- the repository ----------------------------------------------------------
repo=$WORK/repo
mkdir -p "$repo"
git -C "$REPO_ROOT" archive --format=tar HEAD | tar -x -C "$repo"
cat > "$repo/flake.nixlike" <<'EOF'
{ default = derivation { name = "tree"; system = "x86_64-linux"; builder = "/bin/sh"; }; }
EOF
g() { git -C "$repo" -c user.name=bench -c user.email=bench@localhost "$@"; }
g init -q
g add -A
g commit -qm A
rev=$(g rev-parse HEAD)
echo "extra" > "$repo/EXTRA"
g add EXTRA
g commit -qm B
files=$(g ls-tree -r --name-only "$rev" | wc -l)
size=$(du -sh --exclude=.git "$repo" | cut -f1)

# --- Nix in a private /nix ------------------------------------------------------
mkdir -p "$WORK/nix-conf"
printf 'sandbox = false\nsubstituters =\n' > "$WORK/nix-conf/nix.conf"
cat > "$WORK/nix-run.sh" <<EOF
#!/usr/bin/env bash
set -eu
mkdir -p "\$1/nix"
mount --bind "\$1/nix" /nix
export NIX_CONF_DIR="$WORK/nix-conf" NIX_PATH= NIX_REMOTE= XDG_CACHE_HOME="\$1/cache" HOME="\$1"
shift
tf=\$1; shift
start=\$EPOCHREALTIME
"\$@" > /dev/null
end=\$EPOCHREALTIME
echo "\$start \$end" > "\$tf"
EOF
chmod +x "$WORK/nix-run.sh"
nix_expr="(builtins.fetchGit { url = \"file://$repo\"; rev = \"$rev\"; }).outPath"

elapsed() { awk '{ printf "%.3f", $2 - $1 }' "$1"; }
time_mini() { # STORE TIMEFILE
    local start end
    start=$EPOCHREALTIME
    "$MINI" --store "$1" derivation show "git+file://$repo?rev=$rev#default" > /dev/null
    end=$EPOCHREALTIME
    echo "$start $end" > "$2"
}
time_nix() { # HOME TIMEFILE
    unshare --mount --propagation private "$WORK/nix-run.sh" "$1" "$2" \
        nix-instantiate --read-write-mode --eval -E "$nix_expr"
}

declare -a mini_cold mini_cached nix_cold nix_cached
for ((r = 1; r <= ROUNDS; r++)); do
    m=$WORK/mini-$r n=$WORK/nix-$r
    run_mini() { time_mini "$m/store" "$WORK/t"; mini_cold+=("$(elapsed "$WORK/t")")
                 time_mini "$m/store" "$WORK/t"; mini_cached+=("$(elapsed "$WORK/t")"); }
    run_nix() { time_nix "$n" "$WORK/t"; nix_cold+=("$(elapsed "$WORK/t")")
                time_nix "$n" "$WORK/t"; nix_cached+=("$(elapsed "$WORK/t")"); }
    if ((r % 2)); then run_mini; run_nix; else run_nix; run_mini; fi
    echo "round $r: mini ${mini_cold[-1]} s / ${mini_cached[-1]} s cached; nix ${nix_cold[-1]} s / ${nix_cached[-1]} s cached" >&2
done

best() { printf '%s\n' "$@" | sort -n | head -1; }
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

table=$(cat <<EOF
Fetching revision A of a $files-file, $size tree (this repository) into an empty store, then again; best and median of $ROUNDS rounds, same run.

| | Nix 2.8 \`builtins.fetchGit\` | mini \`git+file:?rev=\` | mini / Nix |
|---|---|---|---|
| cold, best | $(best "${nix_cold[@]}") s | $(best "${mini_cold[@]}") s | $(ratio "$(best "${mini_cold[@]}")" "$(best "${nix_cold[@]}")") |
| cold, median | $(median "${nix_cold[@]}") s | $(median "${mini_cold[@]}") s | $(ratio "$(median "${mini_cold[@]}")" "$(median "${nix_cold[@]}")") |
| cached, best | $(best "${nix_cached[@]}") s | $(best "${mini_cached[@]}") s | $(ratio "$(best "${mini_cached[@]}")" "$(best "${nix_cached[@]}")") |
| cached, median | $(median "${nix_cached[@]}") s | $(median "${mini_cached[@]}") s | $(ratio "$(median "${mini_cached[@]}")" "$(median "${nix_cached[@]}")") |
EOF
)
echo "$table"
if ((record)); then
    {
        echo "# Time-travel benchmark: last figures"
        echo
        echo "\`ROUNDS=$ROUNDS ${TMPDIR:+TMPDIR=$TMPDIR }bench/time-travel/fetch.sh --record\` on $(nproc) cores, $(uname -r); $(nix-instantiate --version)."
        echo
        echo "$table"
    } > "$RESULTS_FILE"
fi
