#!/usr/bin/env bash
# Builds the test guest into .cache/guest/: vmlinuz (Debian's cloud kernel), its virtio-blk
# modules (modules/, for guest/diskwrite) and initramfs.cpio.gz (busybox-static + guest/init +
# static guest/memfill and guest/diskwrite + the modules).
# Idempotent: the kernel is fetched once; the initramfs is rebuilt only when its inputs change.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

repo=$(cd "$(dirname "$0")/.." && pwd)
out="$repo/.cache/guest"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log() { echo "build-guest: $*" >&2; }

apt_updated=0
apt_update() {
  if ((apt_updated == 0)); then
    log "apt-get update"
    if [[ $(id -u) -eq 0 ]]; then apt-get update >&2; else sudo -n apt-get update >&2; fi
    apt_updated=1
  fi
}

# The meta-package only depends on the current versioned image package; download that one.
# awk reads to the end: an early exit could SIGPIPE apt-cache and trip pipefail.
kernel_package() {
  { apt-cache depends linux-image-cloud-amd64 2>/dev/null || true; } \
    | awk '/Depends: linux-image-[0-9]/ && !found { print $2; found = 1 }'
}

# virtio-blk and what it needs, in load order (guest/init insmods them in this order).
VIRTIO_MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk"

# Copies the virtio-blk modules of the unpacked package in $work/kernel into $out/modules.
extract_modules() {
  local name file
  rm -rf "$out/modules.tmp"
  mkdir -p "$out/modules.tmp"
  for name in $VIRTIO_MODULES; do
    file=$(find "$work/kernel/lib/modules" -name "$name.ko" | head -n1)
    [[ -n "$file" ]] || { log "module $name.ko not in the kernel package"; exit 1; }
    cp "$file" "$out/modules.tmp/$name.ko"
  done
  rm -rf "$out/modules"
  mv "$out/modules.tmp" "$out/modules"
}

# Downloads and unpacks kernel package $1 into $work/kernel (vmlinuz and the virtio modules).
unpack_kernel_package() {
  local pkg=$1
  log "downloading $pkg"
  (cd "$work" && apt-get download "$pkg" >&2)
  mkdir -p "$work/kernel"
  dpkg-deb --fsys-tarfile "$work"/"$pkg"_*.deb \
    | tar -x -C "$work/kernel" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/drivers/block/virtio_blk.ko'
}

fetch_kernel() {
  local pkg
  pkg=$(kernel_package)
  if [[ -z "$pkg" ]]; then
    apt_update
    pkg=$(kernel_package)
  fi
  [[ -n "$pkg" ]] || { log "cannot resolve linux-image-cloud-amd64"; exit 1; }
  # Stale package lists name versions the mirror no longer has: refresh once and retry.
  if ! unpack_kernel_package "$pkg"; then
    apt_update
    pkg=$(kernel_package)
    unpack_kernel_package "$pkg"
  fi
  local image
  image=$(ls "$work"/kernel/boot/vmlinuz-* | head -n1)
  cp "$image" "$out/vmlinuz.tmp"
  extract_modules
  echo "$pkg" >"$out/kernel-package"
  mv "$out/vmlinuz.tmp" "$out/vmlinuz"
}

# A guest built before the modules were needed: fetch the same kernel package again for them.
fetch_modules() {
  local pkg
  pkg=$(cat "$out/kernel-package")
  if ! unpack_kernel_package "$pkg"; then
    apt_update
    unpack_kernel_package "$pkg"
  fi
  extract_modules
}

build_initramfs() {
  local root="$work/root"
  mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
  cp /bin/busybox "$root/bin/busybox"
  gcc -static -O2 -Wall -Wextra -o "$root/bin/memfill" "$repo/guest/memfill.c"
  gcc -static -O2 -Wall -Wextra -o "$root/bin/diskwrite" "$repo/guest/diskwrite.c"
  cp "$out"/modules/*.ko "$root/lib/modules/"
  install -m 0755 "$repo/guest/init" "$root/init"
  (cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc -R 0:0 --quiet) \
    | gzip -9 >"$out/initramfs.cpio.gz.tmp"
  mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
}

# busybox-static installs /bin/busybox; a dynamic busybox would not run inside the initramfs.
busybox_file=$(readlink -f /bin/busybox)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' \
  || { log "busybox-static missing; run scripts/setup-qemu.sh"; exit 1; }

if [[ -s "$out/vmlinuz" ]]; then
  log "kernel present ($(cat "$out/kernel-package" 2>/dev/null || echo unknown))"
else
  fetch_kernel
fi
if [[ ! -s "$out/modules/virtio_blk.ko" ]]; then
  fetch_modules
fi

inputs_hash=$(cat "$repo/guest/init" "$repo/guest/memfill.c" "$repo/guest/diskwrite.c" "$0" "$busybox_file" "$out"/modules/*.ko | sha256sum | cut -d' ' -f1)
if [[ -s "$out/initramfs.cpio.gz" && "$(cat "$out/initramfs.stamp" 2>/dev/null)" == "$inputs_hash" ]]; then
  log "initramfs up to date"
else
  log "building initramfs"
  build_initramfs
  echo "$inputs_hash" >"$out/initramfs.stamp"
fi
log "guest ready in $out"
