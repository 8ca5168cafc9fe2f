#!/usr/bin/env bash
# Installs what the real-QEMU test bench and `npm run lint` need. Idempotent: apt runs only when
# something is missing, and `apt-get update` at most once.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# lz4 and zstd: the command-line baselines of `migstream bench` and bench/compress.ts.
# clang-format (14 on bookworm): `npm run lint`, which `npm test` runs first, checks native/ with it.
packages=(qemu-system-x86 qemu-utils busybox-static cpio gcc libc6-dev openssl iproute2 socat lz4 zstd clang-format)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

# QEMU 10.0 beside the system's 7.2, unpacked into .cache (no root needed once 7.2's
# packages, which provide its shared libraries, are installed).
qemu10() { bash "$(dirname "$0")/setup-qemu10.sh"; }

if ((${#missing[@]} == 0)); then
  echo "setup-qemu: all packages present" >&2
  qemu10
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup-qemu: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo -n env DEBIAN_FRONTEND=noninteractive)
fi

echo "setup-qemu: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
qemu10
