"""Checks of a local TCP port for the service scripts (scripts/kafka.sh).

    port_check.py free PORT        exit 0 if nothing listens on 127.0.0.1:PORT, else 1
    port_check.py owns PID PORT    exit 0 if process PID listens on PORT, else 1

``owns`` matches the listening sockets of /proc/net/tcp{,6} against PID's open file
descriptors (Linux), so a broker that died of a bind error is never mistaken for the
one already there.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

LISTEN = "0A"


def is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def owns(pid: int, port: int) -> bool:
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    fds = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(fds)
    except OSError:
        return False  # gone (or not ours to read)
    for name in names:
        try:
            if os.readlink(fds / name) in wanted:
                return True
        except OSError:
            continue
    return False


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "free":
        return 0 if is_free(int(argv[1])) else 1
    if len(argv) == 3 and argv[0] == "owns":
        return 0 if owns(int(argv[1]), int(argv[2])) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
