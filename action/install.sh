#!/usr/bin/env bash
# The composite action's install step (action.yml): put a hoist binary for
# this runner on PATH and name it in the step's `bin` output.
#
#   1. the runner's tool cache, when it holds this version, re-verified
#      against the checksum recorded when it was cached;
#   2. else the release asset for the runner's OS/arch from the release
#      repository (hoist's own, hoist-dev/hoist, unless the release-repository
#      input names another), verified against the release's .sha256 file
#      before it is cached. With the job's token (the token input, by default
#      github.token) it is fetched through the REST API, authenticated: that
#      reaches a private copy of the releases, and GitHub Enterprise Server;
#      without one, from the public download URL;
#   3. else — only when the build-from-source input is true — built from the
#      action's own source with cargo, saying why. Otherwise a missing
#      release fails the step and says what to change: a source build takes
#      minutes and needs a Rust toolchain, never something to fall into
#      silently.
#
# A binary whose checksum is missing or does not match is never run or
# cached: that is a failed step, not a reason to build from source.
#
# Inputs (environment, set by action.yml — never interpolated into this
# script): HOIST_INSTALL_VERSION (default: the version in the action's
# Cargo.toml, so the binary matches the action's own source),
# HOIST_INSTALL_REPOSITORY (owner/name), HOIST_INSTALL_TOKEN,
# HOIST_INSTALL_BUILD_FROM_SOURCE (true/false). The runner gives
# GITHUB_ACTION_PATH, GITHUB_SERVER_URL, GITHUB_API_URL, RUNNER_OS,
# RUNNER_ARCH, RUNNER_TOOL_CACHE, RUNNER_TEMP, GITHUB_OUTPUT and GITHUB_PATH.
set -Eeuo pipefail

say() { echo "hoist install: $*" >&2; }
# To stderr: it reaches the log from inside $(…) too, and the runner reads
# workflow commands from both streams.
# Exit codes as hoist's own (README, "Exit codes"): 2 for what the workflow
# must change (an input, a release that is not there or is incomplete), 3 for
# what a re-run may fix (the network, GitHub answering an error, a download
# that arrived damaged). Never 1, which is hoist's "blocked by policy".
#
# fail/fail_retry leave a mark ($reported; $$ is this shell's even inside a
# $(…)), so that their 2 or 3, passed up through a $(…), is told apart from
# another command's own 2 (sed's, say).
reported=${RUNNER_TEMP:-/tmp}/hoist-install-reported.$$
rm -f "$reported"
fail() { echo "::error title=hoist install::$*" >&2; : > "$reported"; exit 2; }
fail_retry() { echo "::error title=hoist install::$*" >&2; : > "$reported"; exit 3; }
# Any other command that fails (set -e: mkdir, install, cargo …) ends the step
# with 3, saying where, not with its own code (1 would read as hoist's
# "blocked by policy"). errtrace (-E) runs this inside functions and $(…) too.
on_error() { # exit code, line
  if [ -e "$reported" ]; then exit "$1"; fi
  echo "::error title=hoist install::the install step failed at line $2 (exit $1): re-run the job" >&2
  : > "$reported"
  exit 3
}
trap 'on_error $? $LINENO' ERR
# What stops bash without the ERR trap (an unset variable under -u) exits 1:
# made 3 here, with the same error.
tmp=
on_exit() {
  local rc=$?
  [ -z "$tmp" ] || rm -rf "$tmp"
  if [ "$rc" = 1 ] && [ ! -e "$reported" ]; then
    echo "::error title=hoist install::the install step stopped (exit 1): re-run the job" >&2
    rc=3
  fi
  rm -f "$reported"
  exit "$rc"
}
trap on_exit EXIT

# Where hoist's releases are published (.github/workflows/release.yml).
canonical=hoist-dev/hoist

[ -n "${GITHUB_ACTION_PATH:-}" ] || fail "GITHUB_ACTION_PATH is not set: run this as the hoist action's install step"
action_path=$GITHUB_ACTION_PATH
server=${GITHUB_SERVER_URL:-https://github.com}
api=${GITHUB_API_URL:-https://api.github.com}
tool_cache=${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-/tmp}/hoist-tool-cache}
repo=${HOIST_INSTALL_REPOSITORY:-$canonical}
token=${HOIST_INSTALL_TOKEN:-}
build_from_source=${HOIST_INSTALL_BUILD_FROM_SOURCE:-false}

case $build_from_source in
  true | false) ;;
  *) fail "build-from-source is '$build_from_source': give true or false" ;;
esac
[[ $repo =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] ||
  fail "release-repository '$repo' is not owner/name"

version=${HOIST_INSTALL_VERSION:-}
if [ -z "$version" ]; then
  # The first `version = "…"` of Cargo.toml is [package]'s.
  version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$action_path/Cargo.toml" | head -n 1)
fi
version=${version#v}
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]]; then
  fail "version '$version' is not a release version like 1.2.3: set the action's version input to one"
fi

# Release assets exist for Linux (static musl builds) and macOS, each on
# x86_64 and aarch64: hoist-<arch>-<os> (.github/workflows/release.yml).
# RUNNER_OS is Linux, Windows or macOS; RUNNER_ARCH X86, X64, ARM or ARM64.
case "${RUNNER_OS:-}/${RUNNER_ARCH:-}" in
  Linux/X64) platform=x86_64-linux ;;
  Linux/ARM64) platform=aarch64-linux ;;
  macOS/X64) platform=x86_64-macos ;;
  macOS/ARM64) platform=aarch64-macos ;;
  *) platform= ;;
esac

publish() { # dir — only a hoist that runs is handed on.
  local v
  v=$("$1/hoist" --version) || fail_retry "$1/hoist does not run (hoist --version failed): re-run the job"
  echo "bin=$1/hoist" >> "$GITHUB_OUTPUT"
  echo "$1" >> "$GITHUB_PATH"
  say "using $v from $1"
}

# GNU sha256sum on Linux; macOS runners have shasum instead.
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }
sha256_of() { sha256 "$1" | cut -d ' ' -f 1; }

# Why there is no release binary to use, and what to do about it; with
# build-from-source: true, the reason for the build instead.
no_release() { # reason
  if [ "$build_from_source" = true ]; then
    say "$1: building hoist $version from the action's source, as build-from-source is true (this takes minutes)"
    return
  fi
  fail "$1. Set the version input to a released version, release-repository to the repository whose releases hold hoist, or build-from-source: true to compile it on the runner (needs a Rust toolchain; takes minutes)"
}

tmp=$(mktemp -d "${RUNNER_TEMP:-/tmp}/hoist-install.XXXXXX")
# The token goes to curl in a file (-H @file), never on a command line.
if [ -n "$token" ]; then
  (umask 077 && printf 'Authorization: Bearer %s\n' "$token" > "$tmp/auth")
fi

# curl … URL → the HTTP status on stdout; a network failure fails the step.
get() { # output url [extra curl args…]
  local out=$1 url=$2
  shift 2
  curl --silent --show-error --location --retry 3 --retry-connrefused \
       --output "$out" --write-out '%{http_code}' "$@" "$url" ||
    fail_retry "could not download $url (network): re-run the job"
}

# A JSON field reader: jq where there is one (GitHub's runners), else Python.
asset_id() { # release-json asset-name
  if command -v jq >/dev/null; then
    jq -r --arg n "$2" '[.assets[]? | select(.name == $n) | .id][0] // empty' "$1"
  elif command -v python3 >/dev/null; then
    python3 -c 'import json, sys
release = json.load(open(sys.argv[1]))
print(next((a["id"] for a in release.get("assets", []) if a.get("name") == sys.argv[2]), ""))' "$1" "$2"
  else
    return 1
  fi
}

# Fetch release asset NAME of v$version into DEST; prints the HTTP status
# (404: no such release or asset).
via_api=false
fetch() { # name dest
  if $via_api; then
    local id
    id=$(asset_id "$tmp/release.json" "$1") || fail_retry "cannot read the JSON of release v$version of $repo: re-run the job"
    if [ -z "$id" ]; then echo 404; return; fi
    # The API answers with a redirect to the file's storage; curl does not
    # send the Authorization header on to another host.
    get "$2" "$api/repos/$repo/releases/assets/$id" -H @"$tmp/auth" -H 'Accept: application/octet-stream'
  else
    get "$2" "$server/$repo/releases/download/v$version/$1"
  fi
}

if [ -n "$platform" ]; then
  dir=$tool_cache/hoist/$version/$platform
  marker=$tool_cache/hoist/$version/$platform.complete
  if [ -f "$marker" ] && [ -x "$dir/hoist" ]; then
    if [ "$(sha256_of "$dir/hoist")" = "$(cat "$marker")" ]; then
      say "hoist $version for $platform is in the tool cache"
      publish "$dir"
      exit 0
    fi
    say "the cached hoist $version no longer matches its recorded checksum: downloading it again"
    rm -rf "$dir" "$marker"
  fi

  asset=hoist-$platform
  code=404
  if [ -n "$token" ] && { command -v jq || command -v python3; } >/dev/null; then
    via_api=true
    say "reading release v$version of $repo through $api, with the job's token"
    code=$(get "$tmp/release.json" "$api/repos/$repo/releases/tags/v$version" \
               -H @"$tmp/auth" -H 'Accept: application/vnd.github+json')
    case $code in
      200) code=$(fetch "$asset" "$tmp/hoist") ;;
      404) ;;
      401 | 403) fail "$api refused the job's token for the releases of $repo (HTTP $code): give the token input a token that can read them, or an empty token for the public download" ;;
      *) fail_retry "reading release v$version of $repo answered HTTP $code: re-run the job" ;;
    esac
  else
    if [ -n "$token" ]; then
      say "neither jq nor python3 is installed to read the release through the API: downloading without the token"
    fi
    say "downloading $server/$repo/releases/download/v$version/$asset"
    code=$(fetch "$asset" "$tmp/hoist")
  fi
  case $code in
    200)
      code=$(fetch "$asset.sha256" "$tmp/hoist.sha256")
      case $code in
        200) ;;
        404) fail "release v$version has $asset but no $asset.sha256 (HTTP 404): refusing to run an unverified binary" ;;
        *) fail_retry "downloading $asset.sha256 of release v$version answered HTTP $code: refusing to run an unverified binary; re-run the job" ;;
      esac
      # `sha256sum` format: the hex digest, then the file name.
      want=$(tr -s ' \t' ' ' < "$tmp/hoist.sha256" | cut -d ' ' -f 1 | tr 'A-F' 'a-f')
      [[ $want =~ ^[0-9a-f]{64}$ ]] ||
        fail "$asset.sha256 of release v$version holds no SHA-256 checksum: refusing to run an unverified binary"
      got=$(sha256_of "$tmp/hoist")
      [ "$got" = "$want" ] ||
        fail_retry "$asset of release v$version has SHA-256 $got, but its $asset.sha256 says $want: refusing to run it"
      mkdir -p "$dir"
      install -m 0755 "$tmp/hoist" "$dir/hoist"
      echo "$got" > "$marker"
      say "verified $asset (sha256 $got)"
      publish "$dir"
      exit 0
      ;;
    404) no_release "$repo has no release v$version with $asset (HTTP 404)" ;;
    *) fail_retry "downloading $asset of release v$version from $repo answered HTTP $code: re-run the job, or check the action's version input" ;;
  esac
else
  no_release "hoist's releases have no binary for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}"
fi

command -v cargo >/dev/null ||
  fail "building hoist $version from source needs cargo, which is not installed: install a Rust toolchain in an earlier step (e.g. dtolnay/rust-toolchain)"
# Source builds are cached under a hash of the source itself: the same
# version number can name different commits between releases.
src_hash=$(cd "$action_path" && find Cargo.toml Cargo.lock src -type f | LC_ALL=C sort |
           while IFS= read -r f; do sha256 "$f"; done | sha256 | cut -c 1-16)
root=$tool_cache/hoist/$version-source-$src_hash/${RUNNER_ARCH:-unknown}
if [ -x "$root/bin/hoist" ] && [ -f "$root.complete" ]; then
  say "a build of this source is in the tool cache"
else
  cargo install --locked --path "$action_path" --root "$root"
  touch "$root.complete"
fi
publish "$root/bin"
