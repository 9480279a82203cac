#!/usr/bin/env bash
# The composite action's install step (action.yml): put a hoist binary for
# this runner on PATH and name it in the step's `bin` output.
#
#   1. the runner's tool cache, when it holds this version, re-verified
#      against the checksum recorded when it was cached;
#   2. else this repository's release asset for the runner's OS/arch,
#      verified against the release's .sha256 file before it is cached;
#   3. else (no release for this version or platform) built from the action's
#      own source with cargo.
#
# A binary whose checksum is missing or does not match is never run or
# cached: that is a failed step, not a reason to fall back to a source build.
#
# Inputs (environment, set by action.yml — never interpolated into this
# script): HOIST_INSTALL_VERSION (default: the version in the action's
# Cargo.toml, so the binary matches the action's own source),
# HOIST_INSTALL_REPOSITORY (owner/name whose releases to use; default the
# action's repository). The runner gives GITHUB_ACTION_PATH, GITHUB_SERVER_URL,
# RUNNER_OS, RUNNER_ARCH, RUNNER_TOOL_CACHE, RUNNER_TEMP, GITHUB_OUTPUT and
# GITHUB_PATH.
set -euo pipefail

say() { echo "hoist install: $*" >&2; }
fail() { echo "::error title=hoist install::$*"; exit 1; }

action_path=${GITHUB_ACTION_PATH:?the runner sets GITHUB_ACTION_PATH}
server=${GITHUB_SERVER_URL:-https://github.com}
tool_cache=${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-/tmp}/hoist-tool-cache}
repo=${HOIST_INSTALL_REPOSITORY:-}

version=${HOIST_INSTALL_VERSION:-}
if [ -z "$version" ]; then
  # The first `version = "…"` of Cargo.toml is [package]'s.
  version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$action_path/Cargo.toml" | head -n 1)
fi
version=${version#v}
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]]; then
  fail "version '$version' is not a release version like 1.2.3: set the action's version input to one"
fi

# Release assets exist for Linux on x86_64 and aarch64 (static musl builds,
# .github/workflows/release.yml); every other runner builds from source.
case "${RUNNER_OS:-}/${RUNNER_ARCH:-}" in
  Linux/X64) platform=x86_64-linux ;;
  Linux/ARM64) platform=aarch64-linux ;;
  *) platform= ;;
esac

publish() { # dir
  echo "bin=$1/hoist" >> "$GITHUB_OUTPUT"
  echo "$1" >> "$GITHUB_PATH"
  say "using $("$1/hoist" --version) from $1"
}

# GNU sha256sum on Linux; macOS runners (which build from source) have shasum.
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }
sha256_of() { sha256 "$1" | cut -d ' ' -f 1; }

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

  if [ -n "$repo" ]; then
    asset=hoist-$platform
    url=$server/$repo/releases/download/v$version/$asset
    tmp=$(mktemp -d "${RUNNER_TEMP:-/tmp}/hoist-install.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    say "downloading $url"
    code=$(curl --silent --show-error --location --retry 3 --retry-connrefused \
                --output "$tmp/hoist" --write-out '%{http_code}' "$url") ||
      fail "could not download $url (network): re-run the job"
    case $code in
      200)
        code=$(curl --silent --show-error --location --retry 3 --retry-connrefused \
                    --output "$tmp/hoist.sha256" --write-out '%{http_code}' "$url.sha256") ||
          fail "could not download $url.sha256 (network): re-run the job"
        [ "$code" = 200 ] ||
          fail "release v$version has $asset but no $asset.sha256 (HTTP $code): refusing to run an unverified binary"
        # `sha256sum` format: the hex digest, then the file name.
        want=$(tr -s ' \t' ' ' < "$tmp/hoist.sha256" | cut -d ' ' -f 1 | tr 'A-F' 'a-f')
        [[ $want =~ ^[0-9a-f]{64}$ ]] ||
          fail "$asset.sha256 of release v$version holds no SHA-256 checksum: refusing to run an unverified binary"
        got=$(sha256_of "$tmp/hoist")
        [ "$got" = "$want" ] ||
          fail "$asset of release v$version has SHA-256 $got, but its $asset.sha256 says $want: refusing to run it"
        mkdir -p "$dir"
        install -m 0755 "$tmp/hoist" "$dir/hoist"
        echo "$got" > "$marker"
        say "verified $asset (sha256 $got)"
        publish "$dir"
        exit 0
        ;;
      404) say "release v$version has no $asset: building hoist from source" ;;
      *) fail "downloading $url answered HTTP $code: re-run the job, or check the action's version input" ;;
    esac
  else
    say "no repository to download releases from (the action runs from a local path): building hoist from source"
  fi
else
  say "no release asset for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}: building hoist from source"
fi

command -v cargo >/dev/null ||
  fail "hoist $version has no release for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?} and cargo is not installed to build it: install a Rust toolchain in an earlier step, or set the version input to a released version"
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
