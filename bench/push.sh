#!/usr/bin/env bash
# Push benchmarks: hoist side by side with skopeo, real processes, one real
# registry (the Distribution registry with TLS and basic auth, as in the local
# environment) emptied before every cold push, runs alternating between tools.
#
#   bench/push.sh [RUNS]        (default 3 runs per scenario)
#
# Scenarios: cold push of a 1 GiB image of 8 random layers; warm re-push of it
# (every blob already there); cold push of a 4 GiB single-layer image.
# Reports median wall time, CPU seconds (user+sys), peak RSS and the ratios.
# Needs the local environment (localenv/localenv up): hoist gets its registry
# password from moto's ECR, exactly as from ECR.
set -euo pipefail
runs=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
state=${HOIST_LOCALENV_DIR:-$root/.localenv}
work=${HOIST_BENCH_DIR:-/tmp/hoist-bench}
port=${HOIST_BENCH_PORT:-5543}
password=123456789012-auth-token

[ -f "$state/env.sh" ] || { echo "bench: start the local environment first: localenv/localenv up" >&2; exit 2; }
# shellcheck disable=SC1091
. "$state/env.sh"
mkdir -p "$work"
command -v skopeo >/dev/null || { echo "bench: skopeo is missing (localenv up installs it)" >&2; exit 2; }

echo "building hoist (release)…" >&2
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
hoist=$root/target/release/hoist

# A registry of the benchmark's own, so emptying it never touches the tests'.
if [ ! -f "$work/srv.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=hoist-bench-ca -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$work/srv.key" -out "$work/srv.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$work/ext.cnf"
  openssl x509 -req -in "$work/srv.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 30 -extfile "$work/ext.cnf" -out "$work/srv.pem" 2>/dev/null
  mkdir -p "$work/certs" && cp "$work/ca.pem" "$work/certs/ca.crt"
  htpasswd -Bbn AWS "$password" > "$work/htpasswd"
fi
cat > "$work/registry.yml" <<YML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $work/registry-data }, delete: { enabled: true } }
http: { addr: 127.0.0.1:$port, tls: { certificate: $work/srv.pem, key: $work/srv.key } }
auth: { htpasswd: { realm: bench, path: $work/htpasswd } }
YML

registry_pid=
stop_registry() { if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi; registry_pid=; }
trap stop_registry EXIT
fresh_registry() {
  stop_registry
  rm -rf "$work/registry-data"
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null --cacert "$work/ca.pem" "https://127.0.0.1:$port/v2/" && return; sleep 0.1; done
  echo "bench: the registry did not start: $(tail -5 "$work/registry.log")" >&2; exit 3
}

gen() { # dir layers MiB
  [ -f "$1/index.json" ] && return
  echo "generating $1 ($2 layers, $3 MiB)…" >&2
  rm -rf "$1"; python3 "$root/bench/gen_image.py" "$1" --layers "$2" --total-mib "$3"
}
# HOIST_BENCH_SCALE=16 divides the sizes (a quick check of the script itself).
scale=${HOIST_BENCH_SCALE:-1}
gen "$work/img-1g-$scale" 8 $((1024 / scale))
gen "$work/img-4g-$scale" 1 $((4096 / scale))

# One measured run: prints "wall cpu rss_kib".
measure() {
  local out; out=$(mktemp)
  /usr/bin/time -f '%e %U %S %M' -o "$out" "$@" >/dev/null 2>"$work/last.err" || { echo "bench: failed: $* — $(tail -3 "$work/last.err")" >&2; exit 3; }
  awk '{ printf "%.2f %.2f %d\n", $1, $2 + $3, $4 }' "$out"; rm -f "$out"
}
n=0
push_hoist() { AWS_CA_BUNDLE=$work/ca.pem measure "$hoist" push "$1" --repository "$2" --create-repository -q --registry-endpoint "https://127.0.0.1:$port"; }
push_skopeo() { measure skopeo copy -q --dest-creds "AWS:$password" --dest-cert-dir "$work/certs" "oci:$1:bench" "docker://127.0.0.1:$port/$2:bench"; }

declare -A results
record() { results[$1]+="$2"$'\n'; }

for run in $(seq "$runs"); do
  order="hoist skopeo"; [ $((run % 2)) -eq 0 ] && order="skopeo hoist"
  for tool in $order; do
    n=$((n + 1)); repo="bench-$tool-$n"
    fresh_registry
    record "$tool cold-1g" "$("push_$tool" "$work/img-1g-$scale" "$repo")"
    record "$tool warm-1g" "$("push_$tool" "$work/img-1g-$scale" "$repo")"
    echo "run $run: $tool 1 GiB cold+warm done" >&2
  done
done
for run in $(seq "$runs"); do
  order="hoist skopeo"; [ $((run % 2)) -eq 0 ] && order="skopeo hoist"
  for tool in $order; do
    n=$((n + 1)); fresh_registry
    record "$tool cold-4g" "$("push_$tool" "$work/img-4g-$scale" "bench-$tool-$n")"
    echo "run $run: $tool 4 GiB cold done" >&2
  done
done

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { printf '%s' "${results[$1]}" | awk -v c="$2" 'NF { print $c }'; }
{
  echo "| scenario | tool | wall s (median) | CPU s user+sys (median) | peak RSS MiB (max) |"
  echo "|---|---|---:|---:|---:|"
  for s in cold-1g warm-1g cold-4g; do
    for tool in hoist skopeo; do
      k="$tool $s"
      printf '| %s | %s | %s | %s | %s |\n' "$s" "$tool" "$(col "$k" 1 | median)" "$(col "$k" 2 | median)" "$(col "$k" 3 | sort -n | tail -1 | awk '{ printf "%.0f", $1 / 1024 }')"
    done
  done
  echo
  echo "| scenario | hoist/skopeo wall | hoist/skopeo CPU |"
  echo "|---|---:|---:|"
  for s in cold-1g warm-1g cold-4g; do
    hw=$(col "hoist $s" 1 | median); sw=$(col "skopeo $s" 1 | median)
    hc=$(col "hoist $s" 2 | median); sc=$(col "skopeo $s" 2 | median)
    awk -v s="$s" -v hw="$hw" -v sw="$sw" -v hc="$hc" -v sc="$sc" 'BEGIN { printf "| %s | %.2f | %.2f |\n", s, hw / sw, hc / sc }'
  done
  echo
  echo "$runs runs per scenario, $(nproc) cores, $(date -u +%Y-%m-%d); hoist $("$hoist" --version | cut -d' ' -f2), $(skopeo --version)"
} | tee "$work/results.md"
