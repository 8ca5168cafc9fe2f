#!/usr/bin/env bash
# Installs what test/libvirt/ needs: libvirtd with its QEMU driver, and virsh. Idempotent: apt
# runs only when something is missing, and `apt-get update` at most once. Nothing else global is
# configured: every test host writes its own libvirtd.conf/qemu.conf into a private mount
# namespace (test/helpers/libvirt-hosts.ts), and no daemon is started here.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# --no-install-recommends and no libvirt-daemon-system: that one pulls systemd and polkit, and
# starts a system libvirtd. These three are 9 packages (13 MB on bookworm). iproute2, socat and
# util-linux (unshare, nsenter) come from setup-qemu.sh and the base system.
packages=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients)

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup-libvirt: need root or sudo" >&2; exit 1; }
  sudo=(sudo -n env DEBIAN_FRONTEND=noninteractive)
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
  echo "setup-libvirt: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "setup-libvirt: all packages present" >&2
fi

# The QEMU driver looks up its build-time default user and group (both libvirt-qemu on Debian)
# when it loads, before reading qemu.conf, so even with user = "root" there libvirtd fails without
# them: "Failed to parse user 'libvirt-qemu'". libvirt-daemon-system would create them.
getent group libvirt-qemu >/dev/null || "${sudo[@]}" groupadd -r libvirt-qemu
if ! getent passwd libvirt-qemu >/dev/null; then
  "${sudo[@]}" useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin -c 'Libvirt Qemu' libvirt-qemu
fi
