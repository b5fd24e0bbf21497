#!/usr/bin/env bash
# Installs what a fresh machine lacks for `make test` and `make demo`. Idempotent: it
# only asks apt for packages that are not installed yet, and only refreshes the package
# lists when an install fails.
set -euo pipefail

# Debian packages, each for a reason:
pkgs=(
    qemu-system-x86   # boots the installer under TCG
    qemu-utils        # qemu-img for the disk images
    cpio              # GNU cpio reads our archives back in the packer tests
    gzip
    e2fsprogs         # mkfs.ext4 and debugfs for fixture images
    iproute2          # ip netns for the network tests
    chromium          # the status page test renders it headless
    curl              # make bench: the curl | dd baseline
    bmap-tools        # make bench: the bmaptool copy baseline
    time              # make bench: peak RSS with /usr/bin/time -v
    dnsmasq-base      # DHCP server for the netns tests; -base ships no system service
    isc-dhcp-server   # a second, independent DHCP server implementation for the netns tests
    # The PXE scenarios (qemu-harness/tests/pxe.rs; the iPXE binaries come from the
    # `ipxe` package via apt-get download into the cache, see qemu-harness/src/pxe.rs):
    nginx-light       # serves the ze-pack pxe tree with its generated nginx.conf
    ipxe-qemu         # the iPXE option ROMs QEMU's NICs net-boot with (-boot n)
    ovmf              # UEFI firmware: its own PXE client (TFTP chainload) and the OVMF ISO boot
    # ze-pack iso and the ISO scenarios (docs/iso.md):
    xorriso           # writes the hybrid ISO; the tests read it back
    grub-common       # grub-mkimage builds the BIOS and UEFI GRUB images
    grub-pc-bin       # GRUB's i386-pc modules, cdboot and the hybrid MBR (BIOS boot)
    grub-efi-amd64-bin # GRUB's x86_64-efi modules (BOOTX64.EFI)
    mtools            # writes the EFI system partition and the FAT test disks unmounted
    exfatprogs        # mkfs.exfat and fsck.exfat for the exFAT (Ventoy) test disks
    # The custom kernel (make kernel, kernel-check):
    linux-source-6.1  # its source, /usr/src/linux-source-6.1.tar.xz
    xz-utils          # unpacks that tarball
    make              # kbuild
    gcc               # compiles the kernel and kconfig's host tools
    libc6-dev         # headers and libc for those host tools
    bc                # kbuild computes time constants with it
    bison             # generates kconfig's parser
    flex              # generates kconfig's lexer
    perl              # kbuild helper scripts
    libelf-dev        # objtool, which x86_64 configs can turn on
    libssl-dev        # sign-file and extract-cert, which some configs turn on
)

# Packages whose maintainer scripts would start a system service we never want running
# on this machine (the tests start their own instances with their own config files).
services=(isc-dhcp-server isc-dhcp-server6 nginx)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d exit 101 tells invoke-rc.d not to start services during the install
    # (Debian policy 9.3.3.1); only ours is removed again, an existing one is left alone.
    own_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    if ! apt-get install -y -q "${missing[@]}"; then
        apt-get update -q
        apt-get install -y -q "${missing[@]}"
    fi
    if [[ -n $own_policy ]]; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
fi
# Under systemd the units would still start at the next boot: keep them disabled and
# stopped. Idempotent; a no-op without systemd (containers).
if [[ -d /run/systemd/system && $(id -u) == 0 ]]; then
    for s in "${services[@]}"; do
        if systemctl list-unit-files "$s.service" >/dev/null 2>&1; then
            systemctl disable --now "$s.service" >/dev/null 2>&1 || true
        fi
    done
fi
# `apt-get download` (the harness's kernel fetch) needs package lists.
if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
    [[ $(id -u) == 0 ]] && apt-get update -q
fi

if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    rustup target add x86_64-unknown-linux-musl
fi
for c in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$c"; then
        rustup component add "$c"
    fi
done
