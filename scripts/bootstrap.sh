#!/usr/bin/env bash
# Prepare this machine for Signet: Debian packages, a Python >= 3.12 virtualenv
# in .venv with Signet installed editable.  Safe to run again; it only does
# what is missing.  Used by `make up`, `make test` and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium + chromium-driver: the portal pages' browser tests (Playwright drives Debian's build)
DEBIAN_PACKAGES=(softhsm2 poppler-utils libnss3-tools postgresql qpdf fonts-wqy-microhei
    chromium chromium-driver)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$candidate"; return 0
        fi
    done
    # The machine image keeps newer interpreters under pyenv, off PATH.
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9]; do
        if [ -x "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

if [ ! -x .venv/bin/python ]; then
    PYTHON=$(find_python) || { echo "bootstrap: Signet needs Python >= 3.12 and none was found" >&2; exit 1; }
    echo "bootstrap: creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.signet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing Python dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
fi

# The portal pages' vendored browser libraries are committed; rebuild them (npm) only when
# they are missing or the lock file changed since they were made.
lock=services/portal/frontend/package-lock.json
versions=services/portal/signet/portal/pages/static/vendor/VERSIONS
if [ ! -f "$versions" ] || ! grep -q "package-lock.json $(sha256sum "$lock" | cut -d' ' -f1)" "$versions"; then
    scripts/build_static.sh
fi
