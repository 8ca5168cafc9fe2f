#!/usr/bin/env bash
# One-time set-up of a checkout on a fresh Debian machine: QEMU and the guest's build tools from
# Debian, the npm dependencies (which also builds dist/), and the tiny test guest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-qemu.sh
bash scripts/setup-libvirt.sh
# npm install (not npm ci): it follows package-lock.json, and this npm writes lock files that
# list only this platform's optional packages, which npm ci then refuses as out of sync.
npm install --no-audit --no-fund
bash scripts/build-guest.sh
