#!/usr/bin/env bash
# The composite action's ship step (action.yml): `hoist ship` with the
# action's inputs.
#
# action.yml hands each input over as HOIST_ACTION_<FLAG> in the step's
# environment (never interpolated into a script: no injection); here every
# non-empty one becomes HOIST_<FLAG>, the variable hoist reads for --<flag>.
# Inputs left empty are not exported at all: clap takes an empty variable as
# a given, empty value, which is an error for paths and numbers and a wrong
# value for lists (one empty tag). hoist writes the step's outputs to
# $GITHUB_OUTPUT and the summary to $GITHUB_STEP_SUMMARY itself.
set -euo pipefail

# List inputs may be written one item per line (a YAML block); hoist reads
# them comma-separated.
lists=" TAG MOUNT_FROM ALARM MAX ALLOWED_ACCOUNT_IDS "

for name in $(compgen -e | grep '^HOIST_ACTION_' || true); do
  value=${!name}
  unset "$name"
  flag=${name#HOIST_ACTION_}
  if [[ $lists == *" $flag "* ]]; then
    value=$(printf '%s\n' "$value" | tr ',' '\n' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//' | grep -v '^$' | paste -sd ',' - || true)
  fi
  if [ -n "$value" ]; then
    export "HOIST_$flag=$value"
  fi
done

exec "${HOIST_BIN:-hoist}" ship
