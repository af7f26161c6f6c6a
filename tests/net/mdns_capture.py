"""Print every mDNS packet seen on a host (run inside a test namespace): one JSON line per packet.

``python -m tests.net.mdns_capture ADDRESS``: joins 224.0.0.251 on the interface of ``ADDRESS``, binds
UDP 5353 shared with any responder on the host (SO_REUSEADDR/SO_REUSEPORT: every socket of the group
gets a copy), prints ``{"ready": true}`` once listening, then ``{"src": ip, "hex": data}`` per packet
until killed. What a passive stranger on the LAN sees, without tcpdump.
"""

from __future__ import annotations

import json
import socket
import sys


def main(address: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("224.0.0.251", 5353))
    mreq = socket.inet_aton("224.0.0.251") + socket.inet_aton(address)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    print(json.dumps({"ready": True}), flush=True)
    while True:
        data, (src, _port) = sock.recvfrom(9000)
        print(json.dumps({"src": src, "hex": data.hex()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
