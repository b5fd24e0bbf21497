#!/usr/bin/env bash
# DHCP benchmark: median link-up → lease of `ze-init dhcp` (the static release binary)
# against dnsmasq in a network namespace, over RUNS runs (default 20), without and with
# rapid commit. Needs root, iproute2 and dnsmasq (make deps). Target: <= 50 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p qemu-harness --bin ze-harness
exec target/release/ze-harness bench-dhcp "${1:-20}"
