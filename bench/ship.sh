#!/usr/bin/env bash
# Ship benchmark (issue 13): `hoist ship` end to end next to the same pipeline
# scripted the way teams script it today with aws-cli + skopeo, both against
# the local environment (moto for STS, ECR's API and Lambda; the Distribution
# registry, TLS and basic auth, for ECR's registry endpoint).
#
#   bench/ship.sh [RUNS]        (default 5 runs of each pipeline)
#
# Every run of either pipeline ships a new image (2 gzip layers of fresh random
# bytes, 4 MiB in all) to a repository and a function of its own, so every run
# is cold; the runs alternate which pipeline goes first. Reports the median
# wall time of each pipeline, the ratio hoist/scripted against issue 13's floor
# (≤ 0.15) and the median of every stage with its share of the median wall
# time. A report, not a test: it exits 0 whether the floor is met or not, 2 or
# 3 when it could not run or a pipeline failed.
#
# The scripted pipeline, one command per step: aws sts
# assume-role-with-web-identity; aws ecr get-login-password | skopeo login;
# skopeo copy oci:… docker://…; aws ecr describe-images until the image is in
# ECR's API (moto learns of registry pushes asynchronously); aws ecr
# start-image-scan; aws ecr wait image-scan-complete (the AWS CLI's waiter:
# looks at once, then every 5 s); aws ecr describe-image-scan-findings (fails on
# HIGH or CRITICAL findings other than moto's fixed one); aws lambda
# update-function-code --image-uri …@digest; aws lambda wait
# function-updated-v2; aws lambda publish-version; aws lambda update-alias.
# hoist: one `hoist ship` with the same policy (the allow-list names moto's
# finding), the default poll interval and the default strategy (all at once).
#
# Each aws-cli call starts a Python interpreter (about half a second): that is
# part of what is measured, as it is what teams pay.
set -euo pipefail
runs=${1:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
state=${HOIST_LOCALENV_DIR:-$root/.localenv}
work=${HOIST_BENCH_DIR:-/tmp/hoist-bench}/ship

[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "bench: RUNS must be a whole number above 0, not '$runs'" >&2; exit 2; }
[ -f "$state/env.sh" ] || { echo "bench: start the local environment first: localenv/localenv up (or point HOIST_LOCALENV_DIR at it)" >&2; exit 2; }
# shellcheck disable=SC1091
. "$state/env.sh"
command -v skopeo >/dev/null || { echo "bench: skopeo is missing (localenv up installs it)" >&2; exit 2; }
py=$state/venv/bin/python
aws=$state/venv/bin/aws
helper=$root/bench/ship_helper.py
if [ ! -x "$aws" ]; then
  echo "installing aws-cli (v1) into $state/venv…" >&2
  "$state/venv/bin/pip" install -q awscli || { echo "bench: could not install aws-cli into $state/venv" >&2; exit 3; }
fi

echo "building hoist (release)…" >&2
cargo build --release --quiet --manifest-path "$root/Cargo.toml" || { echo "bench: hoist did not build" >&2; exit 3; }
hoist=$root/target/release/hoist

rm -rf "$work"
mkdir -p "$work"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
id=hoist-bench-ship-$(date +%s)-$$
account=123456789012 # moto's
ecr_host=$account.dkr.ecr.$AWS_REGION.amazonaws.com
# The role the CI job assumes with its OIDC token (moto checks no trust
# policy), and the functions' execution role.
ci_role=arn:aws:iam::$account:role/$id-ci
"$py" "$helper" token "$work/token"
exec_role=$("$py" "$helper" role "$id") || { echo "bench: could not create the functions' role in moto (is the local environment up?)" >&2; exit 3; }
# What moto holds for the run under way (also after a failure), then the role.
repo= fn=
tidy() {
  [ -z "$repo" ] || "$py" "$helper" cleanup "$repo" "$fn" >/dev/null 2>&1 || true
  "$py" "$helper" unrole "$id" >/dev/null 2>&1 || true
  rm -f "$work"/run-*/auth.json # the registry password skopeo login wrote
}
trap tidy EXIT
cat > "$work/allow.toml" <<'TOML'
[[allow]]
id = "CVE-9999-9999"
package = "moto_fake"
reason = "moto's one fixed finding (the scripted pipeline lets it through too)"
expires = 2099-12-31
TOML

fail() { # what, run dir
  echo "bench: $1 failed (run directory $2):" >&2
  tail -5 "$2/log" >&2 || true
  exit 3
}

# aws-cli + skopeo, each step timed (bash's EPOCHREALTIME: no process started).
run_scripted() { # run-dir repository function tag
  local d=$1 repo=$2 fn=$3 tag=$4
  mark() { printf '%s %s\n' "$1" "$EPOCHREALTIME" >>"$d/marks"; }
  mark start
  (
    set -euo pipefail
    creds=$("$aws" sts assume-role-with-web-identity --role-arn "$ci_role" --role-session-name "bench-$tag" \
      --web-identity-token "$(<"$work/token")" \
      --query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' --output text)
    read -r AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN <<<"$creds"
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
    mark sts
    # The local registry stands in for ECR's registry endpoint.
    "$aws" ecr get-login-password |
      skopeo login --authfile "$d/auth.json" --cert-dir "$state/certs.d" --username AWS --password-stdin "$HOIST_LOCALENV_REGISTRY"
    mark ecr-login
    skopeo copy -q --authfile "$d/auth.json" --dest-cert-dir "$state/certs.d" --digestfile "$d/digest" \
      "oci:$d/image:bench" "docker://$HOIST_LOCALENV_REGISTRY/$repo:$tag"
    digest=$(<"$d/digest")
    mark push
    # ECR's API may not have the image the moment the registry took it (here it
    # never does at once: moto learns of it through the glue).
    for try in $(seq 20); do
      "$aws" ecr describe-images --repository-name "$repo" --image-ids imageDigest="$digest" >/dev/null 2>&1 && break
      [ "$try" -lt 20 ] || { echo "the image is not in ECR's API after 20 looks"; exit 1; }
      sleep 0.5
    done
    mark visible
    "$aws" ecr start-image-scan --repository-name "$repo" --image-id imageDigest="$digest" >/dev/null
    mark start-scan
    "$aws" ecr wait image-scan-complete --repository-name "$repo" --image-id imageDigest="$digest"
    mark scan-wait
    blocking=$("$aws" ecr describe-image-scan-findings --repository-name "$repo" --image-id imageDigest="$digest" \
      --query "imageScanFindings.findings[?(severity=='HIGH' || severity=='CRITICAL') && name!='CVE-9999-9999'].name" \
      --output text)
    [ -z "$blocking" ] || { echo "blocked by findings: $blocking"; exit 1; }
    mark findings
    "$aws" lambda update-function-code --function-name "$fn" --image-uri "$ecr_host/$repo@$digest" >/dev/null
    mark update-code
    "$aws" lambda wait function-updated-v2 --function-name "$fn"
    mark update-wait
    version=$("$aws" lambda publish-version --function-name "$fn" --query Version --output text)
    mark publish
    "$aws" lambda update-alias --function-name "$fn" --name live --function-version "$version" >/dev/null
    mark alias
  ) >"$d/log" 2>&1 || fail "the scripted pipeline" "$d"
  mark end
  # Stage = time since the previous mark.
  awk -v run="$run" '{ if (NR > 1 && $1 != "end") printf "%s scripted %s %.3f\n", run, $1, $2 - prev; if (NR == 1) t0 = $2; prev = $2 }
    END { printf "%s scripted wall %.3f\n", run, prev - t0 }' "$d/marks"
}

# One `hoist ship`; its progress lines are stamped as they reach stderr.
stamp() { while IFS= read -r line; do printf '%s\t%s\n' "$EPOCHREALTIME" "$line"; done; }
run_hoist() { # run-dir repository function tag
  local d=$1 repo=$2 fn=$3 tag=$4 t0 t1 rc=0
  t0=$EPOCHREALTIME
  { "$hoist" ship "$d/image" --ci local --output json --repository "$repo" --tag "$tag" \
      --role-arn "$ci_role" --id-token-file "$work/token" \
      --severity-threshold HIGH --allowlist "$work/allow.toml" \
      --function "$fn" --alias live --digest-file "$d/digest" \
      2>&1 >"$d/hoist.json" | stamp >"$d/log"; } || rc=$?
  t1=$EPOCHREALTIME
  [ "$rc" -eq 0 ] || { cut -f2- "$d/log" > "$d/log.txt"; mv "$d/log.txt" "$d/log"; fail "hoist ship (exit $rc)" "$d"; }
  "$py" "$helper" hoist-stages "$d/hoist.json" "$d/log" "$t0" "$t1" >"$d/stages" || { echo "bench: could not read hoist's timings" >&2; exit 3; }
  awk -v run="$run" '{ print run, "hoist", $1, $2 }' "$d/stages"
  awk -v run="$run" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%s hoist wall %.3f\n", run, t1 - t0 }'
}

raw=$work/timings.txt
echo "# run pipeline stage seconds" > "$raw"
for run in $(seq "$runs"); do
  order="hoist scripted"; [ $((run % 2)) -eq 0 ] && order="scripted hoist"
  for p in $order; do
    d=$work/run-$run-$p
    repo=$id-$run-$p fn=$id-$run-$p tag=run-$run
    mkdir -p "$d"
    python3 "$root/bench/gen_image.py" "$d/image" --layers 2 --total-mib 4 --gzip || { echo "bench: could not generate the image" >&2; exit 3; }
    "$py" "$helper" setup "$repo" "$fn" "$exec_role" >"$d/setup.log" 2>&1 || fail "setting up $repo" "$d"
    "run_$p" "$d" "$repo" "$fn" "$tag" >>"$raw"
    # Both pipelines must have done the same thing: alias live on a new version of the pushed digest.
    "$py" "$helper" check "$fn" "$(<"$d/digest")" >"$d/check.log" 2>&1 || { cp "$d/check.log" "$d/log"; fail "the check after $p" "$d"; }
    "$py" "$helper" cleanup "$repo" "$fn" >/dev/null 2>&1 || true
    repo= fn=
    rm -rf "$d/image" "$d/auth.json"
    echo "run $run: $p $(awk -v r="$run" -v p="$p" '$1 == r && $2 == p && $3 == "wall" { print $4 }' "$raw") s" >&2
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%.2f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# The median over runs of the sum of STAGES (space-separated) of PIPELINE.
stage() { # pipeline stages…
  local p=$1; shift
  awk -v p="$p" -v s=" $* " '$2 == p && index(s, " " $3 " ") { t[$1] += $4; n[$1]++ } END { for (r in t) print t[r] }' "$raw" | median
}
share() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "") print "—"; else printf "%.0f%%", 100 * a / b }'; }
row() { # label, scripted stages ("" = none), hoist stages ("" = none)
  local s="" h=""
  [ -z "$2" ] || s=$(stage scripted $2)
  [ -z "$3" ] || h=$(stage hoist $3)
  printf '| %s | %s | %s | %s | %s |\n' "$1" "${s:-—}" "$(share "$s" "$sw")" "${h:-—}" "$(share "$h" "$hw")"
}
sw=$(stage scripted wall)
hw=$(stage hoist wall)
range() { awk -v p="$1" '$2 == p && $3 == "wall" { if (min == "" || $4 < min) min = $4; if ($4 > max) max = $4 } END { printf "%.2f–%.2f", min, max }' "$raw"; }
{
  echo "| pipeline | wall s (median) | range s |"
  echo "|---|---:|---:|"
  echo "| aws-cli + skopeo | $sw | $(range scripted) |"
  echo "| hoist ship | $hw | $(range hoist) |"
  echo
  awk -v h="$hw" -v s="$sw" 'BEGIN { r = h / s; printf "hoist/scripted wall: %.3f — floor ≤ 0.15: %s\n", r, (r <= 0.15) ? "met" : "NOT met" }'
  echo
  echo "| stage (median s, share of the median wall time) | aws-cli + skopeo | share | hoist | share |"
  echo "|---|---:|---:|---:|---:|"
  row "OIDC token → STS credentials (hoist: also its start-up, reading the image)" "sts" "auth"
  row "ECR login (hoist: also the repository lookup)" "ecr-login" "ecr-login"
  row "push" "push" "push"
  row "until the image is in ECR's API (hoist: also its scan-settings lookups)" "visible" "visible"
  row "scan: start, wait, read findings" "start-scan scan-wait findings" "scan"
  row "deploy preflight (function, alias, image config)" "" "preflight"
  row "update code, wait for the update, publish a version" "update-code update-wait publish" "update-publish"
  row "update alias" "alias" "alias"
  row "exit (hoist writes its report)" "" "finish"
  echo
  echo "| aws-cli + skopeo step | median s | share |"
  echo "|---|---:|---:|"
  for s in sts ecr-login push visible start-scan scan-wait findings update-code update-wait publish alias; do
    m=$(stage scripted "$s"); printf '| %s | %s | %s |\n' "$s" "$m" "$(share "$m" "$sw")"
  done
  echo
  echo "hoist's push, gate and deploy seconds are its own (ship --output json); the splits within them and the time"
  echo "before the push are timed from outside, by when its progress lines reached stderr. Stage medians need not add up"
  echo "to the median wall time."
  echo
  echo "$runs runs of each, $(nproc) cores, load average $load_before before and $load_after after, $(date -u +%Y-%m-%d);"
  echo "hoist $("$hoist" --version | cut -d' ' -f2), $("$aws" --version 2>&1 | cut -d' ' -f1), $(skopeo --version), moto $("$py" -c 'import moto; print(moto.__version__)')"
  echo "raw timings: $raw"
} | tee "$work/results.md"
