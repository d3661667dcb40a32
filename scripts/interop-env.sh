#!/usr/bin/env bash
# Bootstrap the project-local virtualenv holding the interop peers (rootcanal, bumble).
# Idempotent and safe to run concurrently; fast when already installed.
# Prints the venv's python path as the last line of stdout.
#   GATTLING_VENV  venv directory (default: <repo>/.venv)
set -euo pipefail

PINS="rootcanal==1.10.0 bumble==0.0.236"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${GATTLING_VENV:-$repo/.venv}"
py="$venv/bin/python"
stamp="$venv/.gattling-interop-stamp"

ready() { [[ -x "$py" && -f "$stamp" && "$(cat "$stamp")" == "$PINS" ]]; }

if ! ready; then
    # The lock lives inside the venv directory (gitignored); creating the directory first is race-free.
    mkdir -p "$venv" || { echo "interop-env: error: cannot create $venv" >&2; exit 1; }
    exec 9>"$venv/.gattling-interop.lock"
    flock 9
    if ! ready; then  # another process may have finished while we waited
        echo "interop-env: installing $PINS into $venv" >&2
        rm -f "$stamp"
        if [[ ! -x "$py" ]] && ! python3 -m venv "$venv" >&2; then
            echo "interop-env: error: 'python3 -m venv $venv' failed" >&2
            exit 1
        fi
        # shellcheck disable=SC2086  # PINS is a word list
        if ! "$py" -m pip install --quiet $PINS >&2; then
            echo "interop-env: error: 'pip install $PINS' failed (see pip output above)" >&2
            exit 1
        fi
        printf '%s' "$PINS" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
        echo "interop-env: installed" >&2
    fi
    exec 9>&-
fi
echo "$py"
