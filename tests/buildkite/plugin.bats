#!/usr/bin/env bats
# The Buildkite plugin (plugin.yml, hooks/command), tested the way
# Buildkite's plugin-tester does: bats, with the agent played by a stand-in
# as strict as the real one (bin/buildkite-agent) and hoist by a stub that
# records what it was given — or, where it says so, the real hoist
# ($HOIST_TEST_BINARY, set by tests/buildkite.rs).
#
# Run: bats tests/buildkite   (cargo nextest run --test buildkite runs it)

setup() {
  ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
  HOOK=$ROOT/hooks/command
  export BUILDKITE_AGENT_STANDIN_STATE=$BATS_TEST_TMPDIR/agent
  CALLS=$BATS_TEST_TMPDIR/hoist-calls

  # hoist, as a stub: its arguments, then its HOIST_* environment.
  mkdir -p "$BATS_TEST_TMPDIR/bin" "$BATS_TEST_TMPDIR/checkout"
  cat > "$BATS_TEST_TMPDIR/stub-hoist" <<EOF
#!/usr/bin/env bash
{ echo "args: \$*"; env | grep '^HOIST_' | sort; } >> "$CALLS"
if [ -n "\${HOIST_STUB_META_DATA:-}" ]; then buildkite-agent meta-data set hoist-stub "\$HOIST_STUB_META_DATA"; fi
exit \${STUB_HOIST_EXIT:-0}
EOF
  chmod +x "$BATS_TEST_TMPDIR/stub-hoist"
  ln -s "$BATS_TEST_TMPDIR/stub-hoist" "$BATS_TEST_TMPDIR/bin/hoist"
  export PATH="$BATS_TEST_TMPDIR/bin:$ROOT/tests/buildkite/bin:$PATH"

  # What the agent sets for a job.
  export BUILDKITE=true CI=true
  export BUILDKITE_JOB_ID=0190a1b2-job BUILDKITE_BUILD_ID=0190a1b2-build
  export BUILDKITE_AGENT_ACCESS_TOKEN=agent-access-token-xyz
  export BUILDKITE_AGENT_JOB_API_SOCKET=$BATS_TEST_TMPDIR/job-api.sock
  export BUILDKITE_AGENT_JOB_API_TOKEN=job-api-token-xyz
  touch "$BUILDKITE_AGENT_JOB_API_SOCKET"
  export BUILDKITE_PLUGIN_NAME=HOIST
  cd "$BATS_TEST_TMPDIR/checkout"
}

# --- what reaches hoist ---------------------------------------------------------

@test "runs hoist ship from PATH, each property as HOIST_<FLAG>" {
  export BUILDKITE_PLUGIN_HOIST_SOURCE=image.tar
  export BUILDKITE_PLUGIN_HOIST_REPOSITORY=team/app
  export BUILDKITE_PLUGIN_HOIST_ROLE_ARN=arn:aws:iam::123456789012:role/ci-deploy
  export BUILDKITE_PLUGIN_HOIST_CREATE_REPOSITORY=true
  export BUILDKITE_PLUGIN_HOIST_MAX_ERRORS=3
  export BUILDKITE_PLUGIN_HOIST_TAG_0=first BUILDKITE_PLUGIN_HOIST_TAG_1=second
  export BUILDKITE_PLUGIN_HOIST_ALARM="errors, latency ,"
  export BUILDKITE_PLUGIN_HOIST_SEVERITY_THRESHOLD=critical
  export BUILDKITE_PLUGIN_HOIST_SMOKE_EXPECT='ok, "quoted" $(not run)'
  export BUILDKITE_PLUGIN_HOIST_REF=
  run "$HOOK"
  [ "$status" -eq 0 ]
  [[ $output == *"--- :rocket: hoist ship"* ]]
  run cat "$CALLS"
  [ "${lines[0]}" = "args: ship" ]
  [[ $output == *"HOIST_SOURCE=image.tar"* ]]
  [[ $output == *"HOIST_REPOSITORY=team/app"* ]]
  [[ $output == *"HOIST_ROLE_ARN=arn:aws:iam::123456789012:role/ci-deploy"* ]]
  [[ $output == *"HOIST_CREATE_REPOSITORY=true"* ]]
  [[ $output == *"HOIST_MAX_ERRORS=3"* ]]
  [[ $output == *"HOIST_TAG=first,second"* ]]
  [[ $output == *"HOIST_ALARM=errors,latency"* ]]
  [[ $output == *"HOIST_SEVERITY_THRESHOLD=critical"* ]]
  [[ $output == *'HOIST_SMOKE_EXPECT=ok, "quoted" $(not run)'* ]]
  # An empty property is not passed: hoist would take it as an empty value.
  [[ $output != *"HOIST_REF="* ]]
}

@test "list items keep their order past ten" {
  for i in $(seq 0 11); do export "BUILDKITE_PLUGIN_HOIST_TAG_$i=t$i"; done
  run "$HOOK"
  [ "$status" -eq 0 ]
  grep -qx 'HOIST_TAG=t0,t1,t2,t3,t4,t5,t6,t7,t8,t9,t10,t11' "$CALLS"
}

@test "command picks the hoist command" {
  export BUILDKITE_PLUGIN_HOIST_COMMAND=gate
  export BUILDKITE_PLUGIN_HOIST_IMAGE=team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000
  run "$HOOK"
  [ "$status" -eq 0 ]
  grep -qx 'args: gate' "$CALLS"
  grep -q '^HOIST_IMAGE=team/app@sha256:0000' "$CALLS"
  # The plugin's own options are not hoist's.
  ! grep -q '^HOIST_COMMAND' "$CALLS"
}

@test "a step command next to the plugin is named as not run" {
  export BUILDKITE_COMMAND="make image"
  run "$HOOK"
  [ "$status" -eq 0 ]
  [[ $output == *"warning: the step's command is not run"* ]]
  grep -qx 'args: ship' "$CALLS"
}

@test "hoist's exit code is the step's" {
  export STUB_HOIST_EXIT=1
  run "$HOOK"
  [ "$status" -eq 1 ]
  export STUB_HOIST_EXIT=3
  run "$HOOK"
  [ "$status" -eq 3 ]
}

@test "the variables follow the plugin's location (hoist.git → HOIST_GIT)" {
  export BUILDKITE_PLUGIN_NAME=HOIST_GIT
  export BUILDKITE_PLUGIN_HOIST_GIT_REPOSITORY=team/app
  export BUILDKITE_PLUGIN_HOIST_GIT_TAG_0=v1
  run "$HOOK"
  [ "$status" -eq 0 ]
  grep -qx 'HOIST_REPOSITORY=team/app' "$CALLS"
  grep -qx 'HOIST_TAG=v1' "$CALLS"
}

# --- refusals, before anything runs -----------------------------------------------

@test "an option plugin.yml does not declare fails the step, naming it" {
  export BUILDKITE_PLUGIN_HOIST_REPOSITORY=team/app
  export BUILDKITE_PLUGIN_HOIST_SEVERITY=high
  run "$HOOK"
  [ "$status" -eq 2 ]
  [[ $output == *"hoist plugin: error: the plugin has no option 'severity'"* ]]
  [[ $output == *"hint: its options are hoist's flags"*"severity-threshold"* ]]
  [ ! -e "$CALLS" ]
}

@test "a command hoist does not have fails the step" {
  export BUILDKITE_PLUGIN_HOIST_COMMAND=launch
  run "$HOOK"
  [ "$status" -eq 2 ]
  [[ $output == *"command 'launch' is not a hoist command"* ]]
  [ ! -e "$CALLS" ]
}

@test "without hoist on PATH it says how to get one" {
  rm "$BATS_TEST_TMPDIR/bin/hoist"
  run "$HOOK"
  [ "$status" -eq 2 ]
  [[ $output == *"hoist is not on this agent's PATH"* ]]
  [[ $output == *"hint: "*"binary"*"docker: true"* ]]
}

@test "binary runs that hoist" {
  rm "$BATS_TEST_TMPDIR/bin/hoist"
  export BUILDKITE_PLUGIN_HOIST_BINARY=$BATS_TEST_TMPDIR/stub-hoist
  export BUILDKITE_PLUGIN_HOIST_COMMAND=push
  run "$HOOK"
  [ "$status" -eq 0 ]
  grep -qx 'args: push' "$CALLS"
  export BUILDKITE_PLUGIN_HOIST_BINARY=$BATS_TEST_TMPDIR/nothing-here
  run "$HOOK"
  [ "$status" -eq 2 ]
  [[ $output == *"binary '$BATS_TEST_TMPDIR/nothing-here' is not an executable file"* ]]
}

# --- in hoist's image, through the agent's docker -------------------------------------

docker_setup() {
  export DOCKER_STANDIN_LOG=$BATS_TEST_TMPDIR/docker-args
  export DOCKER_STANDIN_HOIST=$BATS_TEST_TMPDIR/stub-hoist
  rm "$BATS_TEST_TMPDIR/bin/hoist" # the image has its own
}

@test "docker: hoist's image of this version, the checkout and the agent mounted, the environment by name only" {
  docker_setup
  export BUILDKITE_PLUGIN_HOIST_DOCKER=true
  export BUILDKITE_PLUGIN_HOIST_REPOSITORY=team/app
  export AWS_REGION=eu-west-1
  # The stub, inside the "container", writes meta-data: the agent and its
  # token reached it.
  export HOIST_STUB_META_DATA=from-the-container
  run "$HOOK"
  [ "$status" -eq 0 ]
  version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n 1)
  # On main the image by tag; at a release's tagged commit, by digest.
  image=$(sed -n 's/^pinned_image=//p' "$HOOK")
  [ -n "$image" ] || image=ghcr.io/hoist-dev/hoist:$version
  args=$(cat "$DOCKER_STANDIN_LOG")
  # image, then the command
  [ "$(tail -n 3 "$DOCKER_STANDIN_LOG" | paste -sd ' ')" = "$image hoist ship" ]
  grep -qx -- "$PWD:$PWD" "$DOCKER_STANDIN_LOG"
  grep -qx -- "$(id -u):$(id -g)" "$DOCKER_STANDIN_LOG"
  grep -qx -- "$(command -v buildkite-agent):/usr/local/bin/buildkite-agent:ro" "$DOCKER_STANDIN_LOG"
  grep -qx -- "$BUILDKITE_AGENT_JOB_API_SOCKET:$BUILDKITE_AGENT_JOB_API_SOCKET" "$DOCKER_STANDIN_LOG"
  for name in HOIST_REPOSITORY AWS_REGION BUILDKITE_JOB_ID BUILDKITE_AGENT_ACCESS_TOKEN BUILDKITE_AGENT_JOB_API_TOKEN; do
    grep -qx -- "$name" "$DOCKER_STANDIN_LOG"
  done
  # No value on docker's command line, the agent's token least of all.
  [[ $args != *agent-access-token-xyz* ]]
  [[ $args != *"HOIST_REPOSITORY="* ]]
  grep -qx 'HOIST_REPOSITORY=team/app' "$CALLS"
  [ "$(buildkite-agent meta-data get hoist-stub)" = from-the-container ]
}

@test "docker: at a release's tagged commit, the image that release published, by digest" {
  docker_setup
  # The plugin as the release workflow tags it: scripts/release-pin run on
  # a copy of this checkout.
  plugin=$BATS_TEST_TMPDIR/plugin
  mkdir -p "$plugin"
  (cd "$ROOT" && cp -R --parents Cargo.toml plugin.yml hooks/command scripts/release-pin \
    templates/hoist/template.yml templates/hoist/README.md gitlab/hoist.yml "$plugin")
  version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n 1)
  digest=sha256:$(printf 'release' | sha256sum | cut -d' ' -f1)
  if ! grep -qx 'pinned_image=' "$plugin/hooks/command"; then
    skip "this checkout is a release's tagged commit, pinned already"
  fi
  "$plugin/scripts/release-pin" "$version" ghcr.io/hoist-dev/hoist "$digest"
  export BUILDKITE_PLUGIN_HOIST_DOCKER=true
  run "$plugin/hooks/command"
  [ "$status" -eq 0 ]
  [ "$(tail -n 3 "$DOCKER_STANDIN_LOG" | paste -sd ' ')" = "ghcr.io/hoist-dev/hoist:$version@$digest hoist ship" ]
  # docker-image still wins over the pin.
  export BUILDKITE_PLUGIN_HOIST_DOCKER_IMAGE=registry.example.com/tools/hoist:edge
  run "$plugin/hooks/command"
  [ "$status" -eq 0 ]
  [ "$(tail -n 3 "$DOCKER_STANDIN_LOG" | paste -sd ' ')" = "registry.example.com/tools/hoist:edge hoist ship" ]
}

@test "docker-image picks the image" {
  docker_setup
  export BUILDKITE_PLUGIN_HOIST_DOCKER_IMAGE=registry.example.com/tools/hoist:edge
  export BUILDKITE_PLUGIN_HOIST_COMMAND=deploy
  run "$HOOK"
  [ "$status" -eq 0 ]
  [ "$(tail -n 3 "$DOCKER_STANDIN_LOG" | paste -sd ' ')" = "registry.example.com/tools/hoist:edge hoist deploy" ]
  unset BUILDKITE_AGENT_JOB_API_SOCKET
  run "$HOOK"
  [ "$status" -eq 0 ]
  ! grep -q 'job-api.sock' "$DOCKER_STANDIN_LOG"
}

# --- the stand-in agent keeps the real one's rules ----------------------------------------

@test "stand-in agent: blank meta-data refused with the agent's error, meta-data shared by the build" {
  run buildkite-agent meta-data set hoist-previous-version ""
  [ "$status" -eq 1 ]
  [ "$output" = "fatal: value cannot be empty, or composed of only whitespace characters" ]
  run buildkite-agent meta-data set hoist-previous-version " "
  [ "$status" -eq 1 ]
  run buildkite-agent meta-data set " " value
  [ "$output" = "fatal: key cannot be empty, or composed of only whitespace characters" ]
  printf 'sha256:ab' | buildkite-agent meta-data set hoist-digest
  # Another job of the same build sees it, and overwrites it.
  BUILDKITE_JOB_ID=other-job run buildkite-agent meta-data get hoist-digest
  [ "$output" = "sha256:ab" ]
  BUILDKITE_JOB_ID=other-job buildkite-agent meta-data set hoist-digest sha256:cd
  [ "$(buildkite-agent meta-data get hoist-digest)" = "sha256:cd" ]
  # Another build does not.
  BUILDKITE_BUILD_ID=other-build run buildkite-agent meta-data get hoist-digest
  [ "$status" -eq 1 ]
  [ "$(BUILDKITE_BUILD_ID=other-build buildkite-agent meta-data get hoist-digest --default none)" = none ]
  # Without the agent's token nothing reaches Buildkite.
  BUILDKITE_AGENT_ACCESS_TOKEN= run buildkite-agent meta-data set k v
  [ "$status" -eq 1 ]
  [[ $output == "fatal: Missing agent-access-token"* ]]
}

@test "stand-in agent: annotations per context, redaction through the job API only" {
  printf '### one' | buildkite-agent annotate --style success --context hoist-a
  printf '### two' | buildkite-agent annotate --style error --context hoist-b
  [ "$(ls "$BUILDKITE_AGENT_STANDIN_STATE/builds/$BUILDKITE_BUILD_ID/annotations" | grep -c '\.md$')" -eq 2 ]
  run buildkite-agent annotate body --style loud
  [ "$status" -eq 1 ]
  run buildkite-agent annotate body --context "$(printf 'c%.0s' $(seq 101))"
  [ "$status" -eq 1 ]
  printf '  s3cret\n' | buildkite-agent redactor add
  grep -qx 's3cret' "$BUILDKITE_AGENT_STANDIN_STATE/redacted"
  BUILDKITE_AGENT_JOB_API_SOCKET= run buildkite-agent redactor add <<< "x"
  [ "$status" -eq 1 ]
  [[ $output == *"failed to create Job API client"* ]]
}

# --- the real hoist -----------------------------------------------------------------

# A JWT as Buildkite's agent mints it (hoist reads the claims; STS would
# check the signature).
jwt() { # claims-json
  b64() { base64 | tr -d '\n=' | tr '+/' '-_'; }
  printf '%s.%s.%s' "$(printf '{"alg":"RS256","typ":"JWT"}' | b64)" "$(printf '%s' "$1" | b64)" "$(printf 'sig' | b64)"
}

@test "real hoist: doctor through the plugin asks the agent for the token and registers it for redaction" {
  [ -n "${HOIST_TEST_BINARY:-}" ] || skip "HOIST_TEST_BINARY is not set (tests/buildkite.rs sets it)"
  rm "$BATS_TEST_TMPDIR/bin/hoist"
  export BUILDKITE_PLUGIN_HOIST_BINARY=$HOIST_TEST_BINARY
  export BUILDKITE_PLUGIN_HOIST_COMMAND=doctor
  export BUILDKITE_PLUGIN_HOIST_ROLE_ARN=arn:aws:iam::123456789012:role/ci-deploy
  export BUILDKITE_STEP_KEY=check
  exp=$(( $(date +%s) + 600 ))
  token=$(jwt "{\"iss\":\"https://agent.buildkite.com\",\"aud\":\"sts.amazonaws.com\",\"sub\":\"organization:acme:pipeline:app:ref:refs/heads/main:commit:abc123:step:check\",\"exp\":$exp}")
  mkdir -p "$BUILDKITE_AGENT_STANDIN_STATE"
  printf '%s' "$token" > "$BUILDKITE_AGENT_STANDIN_STATE/oidc-token"
  run "$HOOK"
  [ "$status" -eq 0 ]
  [[ $output == *"CI system: buildkite"* ]]
  [[ $output == *'"agent.buildkite.com:sub": "organization:acme:pipeline:app:ref:refs/heads/main:commit:*:step:check"'* ]]
  grep -qx 'sts.amazonaws.com' "$BUILDKITE_AGENT_STANDIN_STATE/oidc-audiences"
  grep -qxF "$token" "$BUILDKITE_AGENT_STANDIN_STATE/redacted"
  [[ $output != *"$token"* ]]
  # doctor's one output, trust-policy-accepts, is empty without
  # --trust-policy: not sent (the agent would refuse it), no warning.
  [ -z "$(buildkite-agent meta-data keys)" ]
  [[ $output != *"meta-data"* ]]
}
