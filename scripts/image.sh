#!/usr/bin/env bash
# Builds a statically linked averyws (libzmq, libstdc++ and glibc linked
# in), the image averyws:latest from Containerfile, and checks the image:
#
#   - the binary has no interpreter and needs no shared library;
#   - the image is at most 25 MB and holds that one file;
#   - its root filesystem, unpacked from `podman save`, runs the image's
#     own Entrypoint and Cmd as the image's own User (chroot: `podman run`
#     cannot start containers on every machine), in a private network
#     namespace so port 8443 is free and nothing leaves loopback;
#   - a TLS client pins the certificate to the SHA-256 fingerprint the
#     server logs, upgrades /echo and gets its masked message echoed;
#   - SIGTERM drains it and it exits 0.
#
#   scripts/image.sh        # as root: podman, python3, a C/C++ compiler
#
# Leaves the stripped binary in target/image/ (the build context). The
# release build takes minutes the first time, seconds once cached.
set -euo pipefail
cd "$(dirname "$0")/.."

image=averyws:latest
max_image_bytes=$((25 * 1000 * 1000))
target_dir=${CARGO_TARGET_DIR:-target}
context=$target_dir/image

fail() {
  echo "image.sh: $*" >&2
  exit 1
}

# Podman can hang on a stale lock; nothing it does here takes minutes.
pod() {
  timeout 300 podman "$@"
}

[ "$(id -u)" = 0 ] || fail "needs root (chroot and a network namespace for the check)"
for tool in cargo rustc podman python3 chroot unshare timeout strip readelf ldd tar; do
  command -v "$tool" >/dev/null || fail "$tool is not on PATH"
done

work=$(mktemp -d)
cleanup() {
  rm -rf "$work"
}
trap cleanup EXIT

# --- the binary --------------------------------------------------------
# --target makes RUSTFLAGS apply to the binary only, not to build scripts
# and proc macros, and keeps the output apart from target/release.
triple=$(rustc -vV | sed -n 's/^host: //p')
case $triple in
  *-linux-gnu) ;;
  *) fail "host $triple: this script links glibc statically (a *-linux-gnu host)" ;;
esac
echo "== static release build ($triple, +crt-static)"
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --locked --bin averyws --target "$triple"
built=$target_dir/$triple/release/averyws

program_headers=$(readelf -lW "$built")
[[ $program_headers != *"program interpreter"* ]] ||
  fail "$built has a program interpreter: not static"
needed=$(readelf -dW "$built" | grep '(NEEDED)' || true)
[ -z "$needed" ] || fail "$built needs shared libraries:"$'\n'"$needed"
ldd_says=$(ldd "$built" 2>&1 || true)
case $ldd_says in
  *"statically linked"* | *"not a dynamic executable"*) ;;
  *) fail "ldd does not call $built static:"$'\n'"$ldd_says" ;;
esac

rm -rf "$context"
mkdir -p "$context"
strip -o "$context/averyws" "$built"
binary_bytes=$(stat -c %s "$context/averyws")
echo "binary: static, no NEEDED, no interpreter; stripped $binary_bytes bytes ($context/averyws)"

# --- the image ---------------------------------------------------------
echo "== podman build $image"
previous=$(pod image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
# A fixed timestamp: the same binary gives the same image id.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
pod build --quiet --timestamp "$epoch" -t "$image" -f Containerfile "$context" >/dev/null
id=$(pod image inspect --format '{{.Id}}' "$image")
if [ -n "$previous" ] && [ "$previous" != "$id" ]; then
  # The old build is now untagged; drop it unless something still uses it.
  pod rmi "$previous" >/dev/null 2>&1 || true
fi

image_bytes=$(pod image inspect --format '{{.Size}}' "$image")
[ "$image_bytes" -le "$max_image_bytes" ] ||
  fail "image is $image_bytes bytes, over $max_image_bytes"
user=$(pod image inspect --format '{{.Config.User}}' "$image")
[[ $user =~ ^[0-9]+:[0-9]+$ ]] || fail "image user '$user' is not numeric uid:gid"
[ "${user%%:*}" != 0 ] || fail "image runs as root"
ports=$(pod image inspect --format '{{json .Config.ExposedPorts}}' "$image")
[[ $ports == *'"8443/tcp"'* ]] || fail "image does not expose 8443/tcp: $ports"
# Entrypoint then Cmd, as the runtime would join them, NUL-separated.
mapfile -d '' argv < <(
  pod image inspect --format '{{json .Config.Entrypoint}}{{"\n"}}{{json .Config.Cmd}}' "$image" |
    python3 -c '
import json, sys
argv = [arg for line in sys.stdin for arg in (json.loads(line) or [])]
sys.stdout.write("".join(arg + "\0" for arg in argv))'
)
[ "${#argv[@]}" -gt 0 ] || fail "image has neither Entrypoint nor Cmd"
echo "image: $id, $image_bytes bytes, user $user, exposes $ports"
echo "image runs: ${argv[*]}"

# --- its root filesystem -------------------------------------------------
pod save --quiet --format docker-archive -o "$work/image.tar" "$image"
mkdir "$work/archive" "$work/rootfs"
chmod 0755 "$work/rootfs" # mktemp's 0700 would lock the image's user out of /
tar -xf "$work/image.tar" -C "$work/archive"
mapfile -t layers < <(python3 -c '
import json, sys
print("\n".join(json.load(open(sys.argv[1]))[0]["Layers"]))' "$work/archive/manifest.json")
for layer in "${layers[@]}"; do
  tar -xf "$work/archive/$layer" -C "$work/rootfs"
done
files=$(cd "$work/rootfs" && find . ! -type d | sort)
[ "$files" = ".${argv[0]}" ] ||
  fail "image should hold only ${argv[0]}, holds:"$'\n'"$files"
echo "root filesystem (${#layers[@]} layer(s)): only ${argv[0]}"

# --- run it, talk to it ----------------------------------------------------
echo "== echo round trip against the image's root filesystem"
unshare --net -- timeout -k 5 60 python3 - "$work/rootfs" "$user" "$work/server.log" "${argv[@]}" <<'PY'
"""Starts the image's command in its root filesystem as its user, then
does one TLS WebSocket echo round trip against it; loopback only, every
wait bounded. Runs in a fresh network namespace."""
import base64
import fcntl
import hashlib
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time

rootfs, user, log_path, *argv = sys.argv[1:]
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


def fail(message):
    sys.exit(f"image.sh: {message}")


def loopback_up():
    # ip link set lo up, without needing iproute2.
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, siocgifflags, ifreq))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))


def read_exact(tls, n):
    data = b""
    while len(data) < n:
        chunk = tls.recv(n - len(data))
        if not chunk:
            fail(f"server closed the connection after {len(data)} of {n} bytes")
        data += chunk
    return data


def masked_frame(opcode, payload):
    assert len(payload) < 126
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def read_frame(tls, pending):
    while len(pending) < 2:
        pending += read_exact(tls, 1)
    head, pending = pending[:2], pending[2:]
    if head[1] & 0x80:
        fail("server sent a masked frame")
    length = head[1] & 0x7F
    if length >= 126:
        fail(f"unexpected frame length code {length}")
    rest = read_exact(tls, max(0, length - len(pending)))
    payload, pending = (pending + rest)[:length], (pending + rest)[length:]
    return head[0], payload, pending


def echo(host, port, fingerprint):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Self-signed development certificate: pinned by fingerprint instead.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    with socket.create_connection((host, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            seen = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
            if seen != fingerprint:
                fail(f"peer certificate {seen} is not the logged {fingerprint}")
            print(f"TLS {tls.version()}, certificate SHA-256 {seen} (as logged)")

            key = base64.b64encode(os.urandom(16))
            tls.sendall(
                b"GET /echo HTTP/1.1\r\nHost: localhost\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            response = b""
            while b"\r\n\r\n" not in response:
                if len(response) > 8192:
                    fail("upgrade response head over 8192 bytes")
                chunk = tls.recv(4096)
                if not chunk:
                    fail(f"server closed during the upgrade: {response!r}")
                response += chunk
            head, pending = response.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            if not lines[0].startswith(b"HTTP/1.1 101 "):
                fail(f"upgrade refused: {lines[0]!r}")
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(b":") for line in lines[1:])
            }
            if headers.get(b"sec-websocket-accept") != accept:
                fail(f"wrong Sec-WebSocket-Accept in {head!r}")

            message = b"averyws image check " + os.urandom(6).hex().encode()
            tls.sendall(masked_frame(0x1, message))
            first, payload, pending = read_frame(tls, pending)
            if first != 0x81 or payload != message:
                fail(f"sent {message!r}, got opcode {first:#x} {payload!r}")
            print(f"echo: sent and got back {message.decode()!r}")

            tls.sendall(masked_frame(0x8, struct.pack("!H", 1000)))
            first, payload, _ = read_frame(tls, pending)
            if first != 0x88 or payload[:2] != struct.pack("!H", 1000):
                fail(f"close answered with opcode {first:#x} {payload!r}")
            print("close: 1000 answered with 1000")


def main():
    # `timeout` ends this with SIGTERM: unwind so the server is killed too.
    signal.signal(signal.SIGTERM, lambda *_: fail("timed out"))
    loopback_up()
    uid = user.split(":")[0]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            ["chroot", f"--userspec={user}", rootfs, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        listening = fingerprint = None
        while listening is None:
            text = open(log_path, encoding="utf-8", errors="replace").read()
            listening = re.search(r"listening on wss://(\S+):(\d+) ", text)
            found = re.search(r"SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", text)
            fingerprint = found and found.group(1)
            if server.poll() is not None:
                fail(f"server exited with {server.returncode} before listening")
            if time.monotonic() > deadline:
                fail("server not listening after 20 s")
            time.sleep(0.05)
        if fingerprint is None:
            fail("no certificate fingerprint in the log")
        status = open(f"/proc/{server.pid}/status").read()
        if not re.search(rf"^Uid:\s+{uid}\s", status, re.M):
            fail(f"server is not running as uid {uid}")
        host, port = listening.group(1), int(listening.group(2))
        print(f"server: {' '.join(argv)} as {user}, listening on {host}:{port}")
        echo("127.0.0.1" if host in ("0.0.0.0", "[::]") else host.strip("[]"), port, fingerprint)

        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            fail("server still running 15 s after SIGTERM")
        if code != 0:
            fail(f"server exited {code} after SIGTERM")
        print("SIGTERM: drained, exit 0")
    except BaseException:
        log = open(log_path, encoding="utf-8", errors="replace").read()
        sys.stderr.write(f"server log:\n{log}")
        raise
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


main()
PY
echo "== image ok: $image, $image_bytes bytes; binary $binary_bytes bytes"
