#!/usr/bin/env bash
# Install what slurm-proxy needs on a Debian 12 machine (as root): system packages,
# the local single-node Slurm (scripts/dev-cluster.sh install) and a virtualenv in
# .venv with requirements.txt (and requirements-dev.txt with --dev).
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

need=()
command -v curl >/dev/null || need+=(curl)
command -v wget >/dev/null || need+=(wget)
command -v pgrep >/dev/null || need+=(procps)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# npm installs the page's browser assets (Swagger UI) from the npm registry.
command -v npm >/dev/null || need+=(npm)
# The browser tests drive Debian's Chromium (never a downloaded one).
[ $DEV = 1 ] && ! command -v chromium >/dev/null && need+=(chromium fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

scripts/dev-cluster.sh install

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
req=requirements.txt
[ $DEV = 1 ] && req=requirements-dev.txt
# Reinstall only when the requirement files change (a dev install covers both).
hash=$(cat requirements*.txt | sha256sum | cut -c1-16)
if [ ! -e ".venv/.installed-$hash-$DEV" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -r "$req"
    rm -f .venv/.installed-*
    touch ".venv/.installed-$hash-$DEV"
    if [ $DEV = 1 ]; then touch ".venv/.installed-$hash-0"; fi
fi
# The command-line client, slurm-proxy, from this checkout.
[ -x .venv/bin/slurm-proxy ] || .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
# Swagger UI for /docs, from npm's registry, exactly as web/package-lock.json pins it
# (its integrity hash); no install scripts run.
lock=$(sha256sum web/package-lock.json | cut -c1-16)
if [ ! -e "web/node_modules/.installed-$lock" ]; then
    (cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    touch "web/node_modules/.installed-$lock"
fi
