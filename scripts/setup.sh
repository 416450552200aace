#!/usr/bin/env bash
# Idempotent set-up: system packages (as root), the virtualenv and the pinned lock file.
# Fast when already done: it compares a stamp of the lock file with the installed one.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=()
command -v java >/dev/null 2>&1 || APT_PACKAGES+=(openjdk-17-jre-headless)
command -v redis-server >/dev/null 2>&1 || APT_PACKAGES+=(redis-server)
command -v chromium >/dev/null 2>&1 || APT_PACKAGES+=(chromium)
# the serving front (serving/front.py): refuses the excess before Python sees it
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || APT_PACKAGES+=(nginx-light)
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${APT_PACKAGES[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
  # Debian starts the packaged nginx site on port 80; the platform runs its own nginx when it serves
  if [[ " ${APT_PACKAGES[*]} " == *" nginx-light "* ]]; then $SUDO service nginx stop >/dev/null 2>&1 || true; fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || { echo "setup: $PYTHON not found (Python 3.11 is required)" >&2; exit 1; }

STAMP=.venv/.lock-stamp
SETUP_VERSION=2  # bump when this script installs differently (2: site-packages byte-compiled)
WANT=$( (cat requirements.lock requirements-nodeps.lock pyproject.toml; echo "$SETUP_VERSION") | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
echo "setup: creating .venv from requirements.lock (about 3.5 GB, a minute or two)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "uv==0.13.9" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/uv pip sync -q --python .venv/bin/python requirements.lock
# The Spark provider's own dependency (pyspark-client) overwrites pyspark's files: install it alone.
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -r requirements-nodeps.lock
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
# uv pip sync removed uv itself from the venv's metadata only if it was not in the lock: keep it usable
.venv/bin/python -m pip install -q --disable-pip-version-check "uv==0.13.9" 2>&1 | grep -v "^WARNING: Location" || true
# Byte-compile every installed module once. Python only writes __pycache__ itself when it may, and a
# machine with PYTHONDONTWRITEBYTECODE=1 (this one, CI, many containers) would otherwise compile
# TensorFlow, Feast, Airflow... from source in every process: importing TensorFlow took 8.3 s instead
# of 3.8 s, Feast 7 s instead of 4 s.
echo "setup: byte-compiling site-packages"
.venv/bin/python -m compileall -q -j 0 .venv/lib/python3.11/site-packages >/dev/null
echo "$WANT" > "$STAMP"
echo "setup: done"
