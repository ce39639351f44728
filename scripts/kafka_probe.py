"""Exit 0 once a Kafka broker really serves requests: a Metadata call lists a live broker.

Standard library only, so it runs before any virtualenv exists. A TCP connect
alone is not enough: the broker accepts connections before it is unfenced.
Usage: kafka_probe.py HOST:PORT [TIMEOUT_SECONDS]
"""

from __future__ import annotations

import socket
import struct
import sys
import time


def metadata_brokers(host: str, port: int) -> int:
    client_id = b"nudge-probe"
    # Metadata request v1 (api_key 3): topics = null (-1) means "no topics", brokers still listed.
    body = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(sock, 4))[0]
        payload = _read(sock, size)
    correlation_id, n_brokers = struct.unpack(">ii", payload[:8])
    if correlation_id != 7:
        raise OSError("unexpected correlation id")
    return n_brokers


def _read(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def main() -> int:
    host, _, port = sys.argv[1].rpartition(":")
    deadline = time.monotonic() + (float(sys.argv[2]) if len(sys.argv) > 2 else 60.0)
    while time.monotonic() < deadline:
        try:
            if metadata_brokers(host, int(port)) >= 1:
                return 0
        except (OSError, struct.error):
            pass
        time.sleep(0.2)
    print(f"kafka at {sys.argv[1]} did not become ready", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
