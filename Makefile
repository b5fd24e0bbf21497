# Thin wrappers over cargo and the harness. `make demo` and `make test` are the two
# commands a newcomer needs; both install their prerequisites first (make deps).

SHELL := /bin/bash
CARGO ?= cargo
MUSL := x86_64-unknown-linux-musl
INIT := target/$(MUSL)/release/ze-init
PACK := target/release/ze-pack
HARNESS := target/release/ze-harness
BUILD := build

.PHONY: deps build harness initrd kernel kernel-check demo test unit e2e lint fmt bench sizes clean

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
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: deps
	$(CARGO) test --workspace

# The QEMU (and, as later issues land, root) tiers. Under CI=true a missing
# prerequisite fails these tests instead of skipping them.
# The qemu-profile kernel is built first (cached) so its four minutes show up here and
# not inside a test's timeout.
e2e: build
	$(HARNESS) kernel-build qemu
	$(CARGO) test -p qemu-harness -- --ignored --test-threads=2

test: lint unit kernel-check e2e

sizes: initrd
	@scripts/sizes.sh $(INIT) $(BUILD)/initrd-nomod.img.gz $(BUILD)/initrd.img.gz

bench: sizes

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
