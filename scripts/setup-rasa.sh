#!/usr/bin/env bash
# Create the Rasa sidecar's own virtual environment: <repo>/.rasa-venv, Python 3.10, rasa pinned.
#
# Rasa 3.6 needs Python < 3.11, so it cannot live in the project's 3.11 venv; the IVR server talks
# to it over HTTP only (ivr/speech/nlu/rasa.py). Idempotent: a stamp file records the installed
# Rasa version, and a second run with the same version returns at once.
#
# Interpreter lookup: $PYTHON310 if set, else a working `python3.10` on PATH, else
# $(pyenv root)/versions/3.10*/bin/python3.10. Exit 1 with a clear message if none is found.
set -euo pipefail

RASA_VERSION="${RASA_VERSION:-3.6.21}"
export RASA_TELEMETRY_ENABLED=false

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.rasa-venv"
stamp="$venv/.rasa-installed"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$RASA_VERSION" && -x "$venv/bin/rasa" ]]; then
    echo "rasa $RASA_VERSION already installed in $venv"
    exit 0
fi

works() {  # a candidate interpreter must run and really be 3.10 (pyenv shims may not)
    [[ -n "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null
}

python=""
if [[ -n "${PYTHON310:-}" ]] && works "$PYTHON310"; then
    python="$PYTHON310"
elif works "$(command -v python3.10 || true)"; then
    python="$(command -v python3.10)"
elif command -v pyenv >/dev/null 2>&1; then
    for candidate in "$(pyenv root)"/versions/3.10*/bin/python3.10; do
        if works "$candidate"; then
            python="$candidate"
        fi
    done
fi
if [[ -z "$python" ]]; then
    cat >&2 <<MSG
setup-rasa: no Python 3.10 interpreter found (Rasa $RASA_VERSION needs Python >=3.8,<3.11).
Install one, e.g. 'pyenv install 3.10', or point PYTHON310 at a python3.10 binary, then re-run.
MSG
    exit 1
fi

echo "setup-rasa: using $python ($("$python" --version 2>&1))"
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "rasa==$RASA_VERSION"
"$venv/bin/rasa" --version >/dev/null
echo "$RASA_VERSION" >"$stamp"
echo "setup-rasa: rasa $RASA_VERSION installed in $venv"
