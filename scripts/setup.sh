#!/usr/bin/env bash
# One-time set-up of a checkout on a fresh Debian machine: QEMU and the guest's build tools from
# Debian, the npm dependencies (which also builds dist/), and the tiny test guest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-qemu.sh
if [[ -f package-lock.json ]]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
bash scripts/build-guest.sh
