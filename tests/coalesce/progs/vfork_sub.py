"""Records (records.h) around a subprocess.run: CPython's subprocess starts
its child with vfork() and execs there, so what the parent wrote before
must be on the socket before vfork (the child shares the parent's memory
and must not flush for it).

    vfork_sub.py ADDR N CO_PROG     records 0..N-1, then the child writes
                                    N..2N-1 (co_prog cont), then 2N..3N-1
"""
import socket
import subprocess
import sys


def record(w, seq):
    n = (w * 37 + seq * 13) % 61
    payload = bytes(ord("a") + (w * 7 + seq * 3 + i) % 26 for i in range(n))
    return b"%02x%06d%03d" % (w & 0xff, seq % 1000000, n) + payload + b"\n"


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    n, prog = int(sys.argv[2]), sys.argv[3]
    s = socket.create_connection((host, int(port)))
    for i in range(n):
        s.send(record(0, i))  # one send per record, small: coalesced
    fd = s.fileno()
    subprocess.run([prog, "cont", str(fd), str(n), str(n), "_exit"],
                   pass_fds=(fd,), check=True)
    for i in range(2 * n, 3 * n):
        s.send(record(0, i))
    s.close()


main()
