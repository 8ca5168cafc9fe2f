#!/usr/bin/env bash
# QEMU 10.0 beside the system's 7.2: Debian's bookworm-backports packages, downloaded with a
# private apt state (the machine's sources and installed packages are left alone) and unpacked
# with `dpkg -x` into .cache/qemu-10.0. They use the shared libraries 7.2 installed.
#
# Afterwards .cache/qemu-10.0/bin holds qemu-system-x86_64, qemu-img, qemu-nbd and
# qemu-storage-daemon wrappers that find their firmware and modules in the unpacked tree.
# Idempotent: a finished unpack is marked with .installed and not redone.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=${MIGSTREAM_QEMU10_DIR:-$PWD/.cache/qemu-10.0}
if [[ -f "$dest/.installed" ]]; then
  echo "setup-qemu10: QEMU $(cat "$dest/.installed") present in $dest" >&2
  exit 0
fi

packages=(qemu-system-x86 qemu-system-data qemu-system-common qemu-utils qemu-block-extra)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A private apt: only bookworm-backports in its sources, its own lists and cache, the
# system's dpkg status (so versions compare against what is installed).
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
cat >"$work/sources.list" <<'EOF'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main
EOF
apt_options=(
  -o "Dir::Etc::SourceList=$work/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o "APT::Sandbox::User=$(id -un)"
  -o "Debug::NoLocking=1"
)
echo "setup-qemu10: reading bookworm-backports" >&2
apt-get "${apt_options[@]}" -q update >&2

version=$(apt-cache "${apt_options[@]}" madison qemu-system-x86 | awk -F'|' '$3 ~ /bookworm-backports/ { gsub(/ /, "", $2); print $2; exit }')
if [[ ! "$version" =~ ^1:10\.0\. ]]; then
  echo "setup-qemu10: bookworm-backports offers qemu-system-x86 \"${version:-nothing}\", not 10.0" >&2
  exit 1
fi
echo "setup-qemu10: downloading ${packages[*]} $version" >&2
(cd "$work/debs" && apt-get "${apt_options[@]}" -q download "${packages[@]/%/=$version}" >&2)

rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$dest.tmp"; done

# Wrappers: the binaries look for firmware in /usr/share/qemu and modules in
# /usr/lib/x86_64-linux-gnu/qemu, which are 7.2's; point them at the unpacked tree instead.
# SeaBIOS and iPXE come from 7.2's packages (seabios, ipxe-qemu), as the backports' own
# dependencies would install them.
mkdir -p "$dest.tmp/bin"
modules=$(ls -d "$dest.tmp"/usr/lib/x86_64-linux-gnu/qemu 2>/dev/null | sed "s|$dest.tmp|$dest|" || true)
for tool in qemu-system-x86_64 qemu-img qemu-nbd qemu-io qemu-storage-daemon; do
  [[ -x "$dest.tmp/usr/bin/$tool" ]] || continue
  firmware=''
  [[ $tool == qemu-system-x86_64 ]] && firmware=" -L $dest/usr/share/qemu -L /usr/share/seabios -L /usr/lib/ipxe/qemu"
  cat >"$dest.tmp/bin/$tool" <<EOF
#!/bin/sh
# QEMU $version from bookworm-backports, unpacked by scripts/setup-qemu10.sh.
QEMU_MODULE_DIR=$modules exec $dest/usr/bin/$tool$firmware "\$@"
EOF
  chmod +x "$dest.tmp/bin/$tool"
done

# The wrappers name $dest: move the tree there, then check that the binary runs on this
# machine's libraries.
rm -rf "$dest"
mv "$dest.tmp" "$dest"
if ! "$dest/bin/qemu-system-x86_64" --version >&2; then
  echo "setup-qemu10: the unpacked qemu-system-x86_64 does not run; missing libraries:" >&2
  ldd "$dest/usr/bin/qemu-system-x86_64" | grep 'not found' >&2 || true
  rm -rf "$dest"
  exit 1
fi
echo "$version" >"$dest/.installed"
echo "setup-qemu10: QEMU $version in $dest" >&2
