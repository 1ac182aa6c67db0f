#!/usr/bin/python3
# TCP listeners for the lowest-latency tests, on 127.0.0.1 and a port the kernel picks (written
# to PORTFILE once listening):
#   fast  accepts and closes every connection at once: a connect takes one loopback round trip
#   slow  keeps its accept queue (backlog 0) full, so the kernel drops every new SYN (counted
#         in TcpExt ListenOverflows); each drop lets one queued connection go, so the client's
#         retransmitted SYN (after the 1 s initial retransmission timeout) gets through: every
#         connect takes about 1 s, for real, in the kernel
import os
import socket
import sys
import time

mode, portfile = sys.argv[1], sys.argv[2]
lsock = socket.socket()
lsock.bind(("127.0.0.1", 0))
lsock.listen(0 if mode == "slow" else 64)
port = lsock.getsockname()[1]


def overflows():
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for i in range(0, len(lines) - 1, 2):
        if lines[i].startswith("TcpExt:"):
            keys, values = lines[i].split()[1:], lines[i + 1].split()[1:]
            return int(dict(zip(keys, values)).get("ListenOverflows", 0))
    return 0


filler = None
if mode == "slow":
    filler = socket.create_connection(("127.0.0.1", port))  # fills the queue
with open(portfile + ".tmp", "w") as f:
    f.write(str(port))
os.rename(portfile + ".tmp", portfile)

if mode == "fast":
    while True:
        c, _ = lsock.accept()
        c.close()

lsock.setblocking(False)
seen = overflows()
while True:
    time.sleep(0.005)
    now = overflows()
    if now > seen:
        seen = now
        try:
            c, _ = lsock.accept()  # room for the retransmitted SYN
            c.close()
        except BlockingIOError:
            pass
