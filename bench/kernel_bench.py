#!/usr/bin/env python3
"""Kernel mode's costs, in short runs (root; see README "Kernel mode").

  bench/kernel_bench.py --nettimeo scripts/nettimeo --kernel build/kernel/nettimeo-kernel \
      --ntgo build/tests/kernel/work/ntgo [sweep] [lateness] [idle] [throughput]

sweep       time of one sweep over 10,000 governed sockets (5,000 loopback
            connections, both ends in the governed cgroup)
lateness    idle_timeout firing lateness over 40 idle connections
idle        the loader's CPU over 10 s with nothing to do (1 s and 50 ms sweeps)
throughput  a Go HTTP server, a new connection per request, with and without
            kernel mode (interleaved runs; the ratio is what matters)
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time

A = None


def env():
    e = dict(os.environ, NETTIMEO_KERNEL=A.kernel)
    if A.lib:
        e["NETTIMEO_LIB"] = A.lib
    return e


HOLDER = r'''
import socket, sys, time, resource
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
n = int(sys.argv[1]); hold = float(sys.argv[2])
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4096)
port = ls.getsockname()[1]
keep = []
for i in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    s, _ = ls.accept()
    keep += [c, s]
print("ready", len(keep), flush=True)
time.sleep(hold)
'''


def stats_of(err):
    m = re.search(r"nettimeo-kernel stats: .*", err)
    return m.group(0) if m else "(no stats: %s)" % err[-300:]


def sweep():
    # A forced 1 s tick (sweeps otherwise run only when something is due).
    p = subprocess.run([A.nettimeo, "run", "--kernel", "--stats", "-q", "-o", "idle_timeout=60s",
                        "--log", os.devnull, "--", sys.executable, "-c", HOLDER, "5000", "8"],
                       capture_output=True, text=True, env=dict(env(), NETTIMEO_KERNEL_SWEEP_MS="1000"),
                       timeout=120)
    print("sweep, 10k governed sockets:", p.stdout.strip(), "|", stats_of(p.stderr))


def lateness():
    lg = "/tmp/nettimeo-bench-late.jsonl"
    if os.path.exists(lg):
        os.unlink(lg)
    srv = subprocess.Popen([A.nettimeo, "run", "--kernel", "--stats", "-q", "-o", "idle_timeout=1s",
                            "--log", lg, "--", A.ntgo, "server", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    line = srv.stdout.readline()
    host, port = line.split("listening=")[1].strip().rsplit(":", 1)
    conns = []
    for i in range(40):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(4096)
        conns.append((s, time.monotonic()))
        time.sleep(0.013)   # spread them over the sweep period
    seen = []
    for s, t0 in conns:
        s.settimeout(5)
        try:
            s.recv(10)
        except OSError:
            pass
        seen.append(time.monotonic() - t0)
    srv.terminate()
    _, err = srv.communicate(timeout=10)
    evs = [json.loads(x) for x in open(lg)]
    late = sorted(e["elapsed_ms"] - e["limit_ms"] for e in evs if e.get("timeout") == "idle_timeout")
    if late:
        print("lateness (elapsed_ms - limit_ms, sweeps when due): n=%d min %.1f median %.1f max %.1f ms"
              % (len(late), late[0], late[len(late) // 2], late[-1]))
    seen.sort()
    print("client-observed cut after (limit 1000 ms): min %.0f median %.0f max %.0f ms"
          % (seen[0] * 1e3, seen[len(seen) // 2] * 1e3, seen[-1] * 1e3))
    print("   ", stats_of(err))


def cpu_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def idle():
    for limit in ("20s", "1s"):
        p = subprocess.Popen([A.nettimeo, "run", "--kernel", "--stats", "-q", "-o",
                              "idle_timeout=" + limit, "--log", os.devnull, "--", "sleep", "10.5"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        time.sleep(0.5)
        c0, t0 = cpu_of(p.pid), time.monotonic()
        time.sleep(9.5)
        c1, t1 = cpu_of(p.pid), time.monotonic()
        _, err = p.communicate(timeout=10)
        print("idle CPU, idle_timeout=%s: %.3f%% of one core (%.2f s CPU over %.1f s) | %s"
              % (limit, 100 * (c1 - c0) / (t1 - t0), c1 - c0, t1 - t0, stats_of(err)))


def one_load(kernel):
    args = [A.nettimeo, "run"] + (["--kernel", "-q", "-o", "idle_timeout=30s", "-o",
                                    "connect_timeout=5s", "-o", "write_timeout=5s"]
                                   if kernel else ["--no-kernel", "-q"])
    srv = subprocess.Popen(args + ["--log", os.devnull, "--", A.ntgo, "server", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env())
    line = srv.stdout.readline()
    addr = line.split("listening=")[1].strip()
    p = subprocess.run([A.ntgo, "load", "http://%s/" % addr, str(A.requests), "4"],
                       capture_output=True, text=True, timeout=120)
    srv.terminate()
    srv.wait(10)
    m = re.search(r"rps=([\d.]+)", p.stdout)
    e = re.search(r"errors=(\d+)", p.stdout)
    return float(m.group(1)), int(e.group(1))


def throughput():
    res = {True: [], False: []}
    for i in range(A.rounds):
        for k in (False, True):
            rps, errs = one_load(k)
            res[k].append(rps)
            print("  round %d %-8s %8.0f req/s (new connection each, %d errors)"
                  % (i + 1, "kernel" if k else "plain", rps, errs))
    for k in (False, True):
        v = sorted(res[k])
        print("%-7s median %.0f req/s" % ("kernel" if k else "plain", v[len(v) // 2]))
    print("ratio kernel/plain (medians): %.3f" % (sorted(res[True])[len(res[True]) // 2] /
                                                   sorted(res[False])[len(res[False]) // 2]))


def main():
    global A
    ap = argparse.ArgumentParser()
    ap.add_argument("--nettimeo", required=True)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--ntgo", required=True)
    ap.add_argument("--lib", default="")
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("what", nargs="*", default=["sweep", "lateness", "idle", "throughput"])
    A = ap.parse_args()
    for w in A.what:
        globals()[w]()


if __name__ == "__main__":
    main()
