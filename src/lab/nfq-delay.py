#!/usr/bin/python3
"""Latency on a lab machine's link, where the kernel has no sch_netem.

The lab's `latency` fault sends every packet the machine sends or receives on eth0 to an
NFQUEUE (iptables' NFQUEUE target, with --queue-bypass), and this program, run in the
machine's network namespace, holds each packet for the delay before it gives the verdict
ACCEPT. Packets leave in the order they came (one fixed delay), so TCP sees latency, not
reordering. It speaks nfnetlink_queue itself (no library): bind the queue, ask for each
packet's metadata only, answer with a verdict per packet id.

Usage: nfq-delay.py QUEUE_NUMBER DELAY_MS
Prints "ready" on stdout once bound. On SIGTERM it accepts every packet it holds, says on stderr
how many packets it delayed, and exits.
The lab starts it and stops it by its own pid (src/lab/latency.ts).
"""

import collections
import errno
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 1
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NLMSG_HDRLEN = 16
SO_RCVBUFFORCE = 33
QUEUE_MAXLEN = 65536


def attr(kind, payload):
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


class Queue:
    def __init__(self, number):
        self.number = number
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        self.sock.bind((0, 0))

    def send(self, msg_type, payload, ack=False):
        self.seq += 1
        # nfgenmsg: family AF_UNSPEC, version 0, the queue number (big-endian).
        body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack(">H", self.number) + payload
        flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
        header = struct.pack("=IHHII", NLMSG_HDRLEN + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, self.seq, 0)
        self.sock.send(header + body)
        if ack:
            self.expect_ack()

    def expect_ack(self):
        data = self.sock.recv(65536)
        length, kind = struct.unpack_from("=IH", data, 0)
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, NLMSG_HDRLEN)
            if code != 0:
                raise OSError(-code, "nfnetlink_queue config: " + os.strerror(-code))

    def bind(self):
        self.send(NFQNL_MSG_CONFIG, attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0)), ack=True)
        self.send(NFQNL_MSG_CONFIG, attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META)), ack=True)
        self.send(NFQNL_MSG_CONFIG, attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", QUEUE_MAXLEN)), ack=True)
        # A full queue accepts rather than drops: the fault is latency, not loss.
        flag = struct.pack(">I", NFQA_CFG_F_FAIL_OPEN)
        self.send(NFQNL_MSG_CONFIG, attr(NFQA_CFG_FLAGS, flag) + attr(NFQA_CFG_MASK, flag), ack=True)

    def accept(self, packet_id):
        self.send(NFQNL_MSG_VERDICT, attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, packet_id)))

    def packet_ids(self, data):
        """The ids of the packets in one datagram (it may hold several netlink messages)."""
        offset = 0
        while offset + NLMSG_HDRLEN <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if length < NLMSG_HDRLEN:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                pos = offset + NLMSG_HDRLEN + 4  # after nfgenmsg
                end = offset + length
                while pos + 4 <= end:
                    alen, atype = struct.unpack_from("=HH", data, pos)
                    if alen < 4:
                        break
                    if atype & 0x7FFF == NFQA_PACKET_HDR:
                        (packet_id,) = struct.unpack_from(">I", data, pos + 4)
                        yield packet_id
                        break
                    pos += (alen + 3) & ~3
            offset += (length + 3) & ~3


def main():
    if len(sys.argv) != 3 or not sys.argv[1].isdigit() or not sys.argv[2].isdigit():
        sys.stderr.write("usage: nfq-delay.py QUEUE_NUMBER DELAY_MS\n")
        return 2
    delay = int(sys.argv[2]) / 1000.0
    queue = Queue(int(sys.argv[1]))
    queue.bind()
    held = collections.deque()  # (due, packet id), due in arrival order
    stopping = []
    delayed = 0
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    print("ready", flush=True)
    while not stopping:
        now = time.monotonic()
        while held and held[0][0] <= now:
            queue.accept(held.popleft()[1])
        timeout = max(0.0, held[0][0] - now) if held else 1.0
        try:
            readable, _, _ = select.select([queue.sock], [], [], timeout)
        except InterruptedError:
            continue
        if not readable:
            continue
        try:
            data = queue.sock.recv(1 << 16)
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                continue  # notifications lost: the kernel drops those packets when the queue goes; TCP resends them
            raise
        arrived = time.monotonic()
        for packet_id in queue.packet_ids(data):
            held.append((arrived + delay, packet_id))
            delayed += 1
    while held:
        queue.accept(held.popleft()[1])
    sys.stderr.write("nfq-delay: delayed %d packets by %s ms\n" % (delayed, sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
