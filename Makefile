# Thin wrappers over cargo and the harness. `make demo` and `make test` are the two
# commands a newcomer needs; both install their prerequisites first (make deps).

SHELL := /bin/bash
CARGO ?= cargo
MUSL := x86_64-unknown-linux-musl
INIT := target/$(MUSL)/release/ze-init
PACK := target/release/ze-pack
HARNESS := target/release/ze-harness
BUILD := build

.PHONY: deps build harness initrd iso kernel kernel-check demo test unit root e2e lint fmt bench sizes fuzz clean

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --release --target $(MUSL) -p ze-init
	$(CARGO) build --release -p ze-pack -p qemu-harness

# build/initrd.img.gz: /init plus the stock kernel's modules (qemu profile);
# build/initrd-nomod.img.gz: /init alone, for a kernel with built-in drivers.
initrd: build
	@mkdir -p $(BUILD)
	@eval "$$($(HARNESS) kernel)" && \
	  $(PACK) initrd --init $(INIT) --modules "$$MODULES" --profile qemu --out $(BUILD)/initrd.img.gz && \
	  cp "$$KERNEL" $(BUILD)/vmlinuz
	$(PACK) initrd --init $(INIT) --profile none --out $(BUILD)/initrd-nomod.img.gz

# build/ze-install.iso: the stock kernel and initrd with IMAGE (raw or .gz) for USB, CD
# and Ventoy installs (docs/iso.md). ISO_ARGS passes more, e.g. --target /dev/sda.
iso: initrd
	@test -n "$(IMAGE)" || { echo "make iso IMAGE=path/to/appliance.img [ISO_ARGS=...]" >&2; exit 2; }
	$(PACK) iso --kernel $(BUILD)/vmlinuz --initrd $(BUILD)/initrd.img.gz --image $(IMAGE) \
	  --out $(BUILD)/ze-install.iso $(ISO_ARGS)

# The harness alone, for the kernel targets.
harness: deps
	$(CARGO) build --release -p qemu-harness

# The custom kernel, every driver built in (kernel-configs/README.md): tinyconfig plus
# the profile's fragments, required symbols checked, bzImage and config into
# $$ZE_CACHE/kernel-build/. Unchanged inputs are a no-op. PROFILE=qemu (default) or
# hardware; KERNEL_SRC=<tree or tarball> replaces Debian's linux-source-6.1.
kernel: harness
	$(HARNESS) kernel-build $(or $(PROFILE),qemu)

# Resolves the config and checks the required symbols without compiling (seconds once
# the source is unpacked). Both profiles unless PROFILE is given.
kernel-check: harness
	$(HARNESS) kernel-check $(PROFILE)

demo: build
	$(HARNESS) demo

lint: deps
	@! git grep -nE '^(<<<<<<<|>>>>>>>) ' -- ':!*.lock' || { echo "merge conflict markers above"; exit 1; }
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: deps
	$(CARGO) test --workspace

# The root tier: loop devices, block ioctls and mounts on this machine's kernel.
# Under CI=true, and in the QEMU tier below, a missing prerequisite (root, a tool)
# fails these tests instead of skipping them.
root: deps
	$(CARGO) test -p ze-init -- --ignored

# The QEMU, network-namespace and PXE tiers. Under CI=true a missing prerequisite fails
# these tests instead of skipping them. The qemu-profile kernel is built first (cached)
# so its minutes show up here and not inside a test's timeout.
e2e: build
	$(HARNESS) kernel-build qemu
	$(CARGO) test -p qemu-harness -- --ignored --test-threads=2

test: lint unit kernel-check root e2e

sizes: initrd
	@scripts/sizes.sh $(INIT) $(BUILD)/initrd-nomod.img.gz $(BUILD)/initrd.img.gz

# Speed and memory against same-run baselines (curl|dd, bmaptool); prints ratios.
bench: sizes harness
	$(HARNESS) kernel-build qemu
	target/release/ze-bench
	$(HARNESS) bench-dhcp 20
	$(HARNESS) bench-boot --runs 5
	$(HARNESS) bench-pxe --installs 16 --mib 256 --runs 3

# Bounded fuzzing on the stable toolchain (fuzz/Cargo.toml says how). New inputs land
# in fuzz/artifacts/corpus/, crashes in fuzz/artifacts/<target>/; the checked-in seeds
# in fuzz/corpus/ are only read.
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@mkdir -p fuzz/artifacts/corpus/dhcp_client
	$(CARGO) fuzz run --sanitizer none dhcp_client fuzz/artifacts/corpus/dhcp_client \
	  fuzz/corpus/dhcp_client -- -max_total_time=$(FUZZ_SECONDS)

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
