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
    if ! apt-get install -y -q "${missing[@]}"; then
        apt-get update -q
        apt-get install -y -q "${missing[@]}"
    fi
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
