#!/usr/bin/env bash
# Regenerates the captured replies in fuzz/corpus/dhcp_client/: real OFFER, ACK and NAK
# messages from dnsmasq and ISC dhcpd (and a rapid-commit ACK from dnsmasq), captured
# in throwaway network namespaces, plus a few hand-made seeds (option overload, RFC 3396
# split options, truncated packets) that real servers rarely send.
#
# Every file is one IPv4 packet as the client's packet socket receives it. The client
# side uses the fuzz harness's constants (ze_init::net::dhcp::fuzz): MAC
# 02:5a:45:00:00:01, xid 0x5a455a45, server 10.77.0.1, so the captures get past the
# client's filters and into its deep paths. UDP checksums are completed as a NIC would
# (veth leaves them to "hardware").
#
# Needs root, iproute2, python3, dnsmasq and dhcpd (make deps). Touches nothing outside
# its own namespaces and temp directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/dhcp_client
tmp=$(mktemp -d)
srv=zeh-gen-s-$$
cli=zeh-gen-c-$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    ip netns del "$srv" 2>/dev/null || true
    ip netns del "$cli" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

ip netns add "$srv"
ip netns add "$cli"
ip -n "$srv" link add srv0 type veth peer name cli0 netns "$cli"
ip -n "$cli" link set cli0 address 02:5a:45:00:00:01
ip -n "$srv" addr add 10.77.0.1/24 dev srv0
for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
ip -n "$srv" link set srv0 up
ip -n "$cli" link set cli0 up

wait_port67() { # bounded: 10 s
    for _ in $(seq 100); do
        grep -q ':0043 ' <(ip netns exec "$srv" cat /proc/net/udp) && return 0
        sleep 0.1
    done
    echo "server did not bind port 67" >&2
    return 1
}

capture=$tmp/capture.py
cat >"$capture" <<'PY'
# Sends one DHCP request from cli0 and saves the first reply with our xid.
import socket, struct, sys, time

MAC = bytes.fromhex("025a45000001")
XID = 0x5A455A45
kind, out = sys.argv[1], sys.argv[2]
extra = bytes.fromhex(sys.argv[3]) if len(sys.argv) > 3 else b""

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def dhcp(msg_type, options):
    hdr = struct.pack("!BBBBIHHIIII", 1, 1, 6, 0, XID, 0, 0x8000, 0, 0, 0, 0)
    hdr += MAC + bytes(10) + bytes(64) + bytes(128) + bytes([99, 130, 83, 99])
    opts = bytes([53, 1, msg_type, 61, 7, 1]) + MAC + bytes([55, 4, 1, 3, 6, 51]) + options
    body = hdr + opts + b"\xff"
    return body + bytes(max(0, 300 - len(body)))

def ip_udp(payload):
    udp_len = 8 + len(payload)
    src, dst = bytes(4), bytes([255] * 4)
    udp = struct.pack("!HHHH", 68, 67, udp_len, 0) + payload
    c = csum(src + dst + struct.pack("!BBH", 0, 17, udp_len) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + udp

def complete_udp_checksum(pkt):
    ihl = (pkt[0] & 15) * 4
    total = struct.unpack("!H", pkt[2:4])[0]
    pkt = bytearray(pkt[:total])
    udp = pkt[ihl:]
    udp[6:8] = b"\0\0"
    pseudo = pkt[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    c = csum(bytes(pseudo + udp)) or 0xFFFF
    pkt[ihl + 6 : ihl + 8] = struct.pack("!H", c)
    return bytes(pkt)

types = {"discover": 1, "request": 3}
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(("cli0", 0x0800))
s.sendto(ip_udp(dhcp(types[kind], extra)), ("cli0", 0x0800, 0, 0, b"\xff" * 6))
deadline = time.time() + 5
while time.time() < deadline:
    s.settimeout(max(0.01, deadline - time.time()))
    try:
        pkt = s.recv(65535)
    except socket.timeout:
        break
    ihl = (pkt[0] & 15) * 4
    if pkt[9] != 17 or struct.unpack("!H", pkt[ihl + 2 : ihl + 4])[0] != 68:
        continue
    body = pkt[ihl + 8 :]
    if body[0] == 2 and struct.unpack("!I", body[4:8])[0] == XID:
        open(out, "wb").write(complete_udp_checksum(pkt))
        sys.exit(0)
sys.exit("no reply to " + kind)
PY

# Option hex for the requests: 50 requested address, 54 server id, 80 rapid commit.
req() { printf '3204%s3604%s' "$1" 0a4d0001; }
hex() { local IFS=.; set -- $1; printf '%02x%02x%02x%02x' "$1" "$2" "$3" "$4"; }
py() { ip netns exec "$cli" python3 "$capture" "$@"; }
offered() { python3 -c 'import sys;d=open(sys.argv[1],"rb").read();i=(d[0]&15)*4+8;print(".".join(map(str,d[i+16:i+20])))' "$1"; }

mkdir -p "$out"

# dnsmasq: OFFER, ACK, NAK ("wrong address"), then a rapid-commit ACK.
ip netns exec "$srv" dnsmasq --keep-in-foreground --log-facility=- --conf-file=/dev/null \
    --port=0 --user=root --group=root --pid-file="$tmp/dnsmasq.pid" \
    --dhcp-leasefile="$tmp/dnsmasq.leases" --interface=srv0 --bind-interfaces \
    --dhcp-authoritative --no-ping --dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,1h \
    --dhcp-option=option:router,10.77.0.1 --dhcp-option=option:dns-server,10.77.0.53 \
    --dhcp-rapid-commit >"$tmp/dnsmasq.log" 2>&1 &
pids+=($!)
wait_port67
py discover "$out/dnsmasq-offer.bin"
a=$(offered "$out/dnsmasq-offer.bin")
py request "$out/dnsmasq-ack.bin" "$(req "$(hex "$a")")"
py request "$out/dnsmasq-nak.bin" "$(req "$(hex 10.99.0.5)")"
py discover "$out/dnsmasq-rapid-ack.bin" 5000
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
unset 'pids[-1]'

# ISC dhcpd: OFFER, ACK, NAK.
cat >"$tmp/dhcpd.conf" <<'EOF'
authoritative;
ping-check false;
default-lease-time 600;
max-lease-time 600;
subnet 10.77.0.0 netmask 255.255.255.0 {
  range 10.77.0.100 10.77.0.199;
  option routers 10.77.0.1;
  option domain-name-servers 10.77.0.53;
  option domain-name "lab.example";
}
EOF
: >"$tmp/dhcpd.leases"
ip netns exec "$srv" dhcpd -4 -f -d -cf "$tmp/dhcpd.conf" -lf "$tmp/dhcpd.leases" \
    -pf "$tmp/dhcpd.pid" srv0 >"$tmp/dhcpd.log" 2>&1 &
pids+=($!)
wait_port67
sleep 0.5 # dhcpd binds its fallback socket before its packet socket is listening
py discover "$out/dhcpd-offer.bin"
a=$(offered "$out/dhcpd-offer.bin")
py request "$out/dhcpd-ack.bin" "$(req "$(hex "$a")")"
py request "$out/dhcpd-nak.bin" "$(req "$(hex 10.99.0.5)")"

# Hand-made seeds, derived from the dnsmasq ACK.
python3 - "$out" <<'PY'
import struct, sys
out = sys.argv[1]
pkt = open(f"{out}/dnsmasq-ack.bin", "rb").read()

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def repack(ip_hdr, body):
    udp_len = 8 + len(body)
    ip = bytearray(ip_hdr[:20])
    ip[2:4] = struct.pack("!H", 20 + udp_len)
    ip[10:12] = b"\0\0"
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    udp = struct.pack("!HHHH", 67, 68, udp_len, 0) + body
    c = csum(bytes(ip[12:20]) + struct.pack("!BBH", 0, 17, udp_len) + udp) or 0xFFFF
    return bytes(ip) + udp[:6] + struct.pack("!H", c) + udp[8:]

body = bytearray(pkt[28:])
# Option overload (52 = 3): router and lease time in `file`, DNS in `sname`.
ov = bytearray(body[:240])
ov[44:108] = bytes(64)
ov[108:236] = bytes(128)
sname = bytes([6, 4, 10, 77, 0, 53, 255])
file = bytes([3, 4, 10, 77, 0, 1, 51, 4, 0, 0, 0x0E, 0x10, 255])
ov[44 : 44 + len(sname)] = sname
ov[108 : 108 + len(file)] = file
ov += bytes([53, 1, 5, 54, 4, 10, 77, 0, 1, 1, 4, 255, 255, 255, 0, 52, 1, 3, 255])
open(f"{out}/seed-overload-ack.bin", "wb").write(repack(pkt, bytes(ov)))
# RFC 3396: the DNS option split in two instances around another option.
sp = bytearray(body[:240]) + bytes(
    [53, 1, 5, 54, 4, 10, 77, 0, 1, 6, 4, 10, 77, 0, 53, 51, 4, 0, 0, 0x0E, 0x10,
     6, 4, 10, 77, 0, 54, 1, 4, 255, 255, 255, 0, 255])
open(f"{out}/seed-split-ack.bin", "wb").write(repack(pkt, bytes(sp)))
# Truncated in the header, in the options, and an option overrunning the packet.
open(f"{out}/seed-truncated-ip.bin", "wb").write(pkt[:19])
open(f"{out}/seed-truncated-options.bin", "wb").write(repack(pkt, bytes(body[:250])))
open(f"{out}/seed-option-overrun.bin", "wb").write(
    repack(pkt, bytes(body[:240]) + bytes([53, 1, 5, 6, 200, 10, 77])))
PY
ls -l "$out"
