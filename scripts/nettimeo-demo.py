#!/usr/bin/env python3
"""nettimeo demo: what the library does, in a few seconds, on real programs.

Run as `nettimeo demo` (the nettimeo command passes --nettimeo and --lib).
1. A server that accepts and never answers; curl, which has no timeout of
   its own, runs twice side by side: alone it waits forever, under
   `nettimeo run -o read_timeout=2s` it is cut at 2 s.
2. A slow server (a small C program compiled on the spot, or python3 when
   there is no C compiler) under the library; its impatient client hangs
   up; the server's late write fails with EPIPE, and the log shows the
   server's own call site.
3. `nettimeo report` of the demo's log.

Exits 0 only when all of that was actually seen: it doubles as a test.
Python 3 standard library only.
"""

import argparse
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True   # importing nettimeo-report.py: no __pycache__ beside it

SLOW_SERVER_C = r"""/* slow-server: answers its client after 2 s, like a server stuck behind a
 * slow database. Written and compiled by `nettimeo demo`. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static char chunk[16384];

static int send_response(int fd)
{
    char head[128];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
                     64 * (int)sizeof chunk);
    if (write(fd, head, (size_t)n) < 0)
        return -1;
    for (int i = 0; i < 64; i++) {
        if (write(fd, chunk, sizeof chunk) < 0)   /* the broken pipe */
            return -1;
        usleep(5000);
    }
    return 0;
}

static void handle_client(int fd)
{
    char request[4096];
    if (read(fd, request, sizeof request) <= 0)
        return;
    sleep(2);                                     /* the slow part */
    if (send_response(fd) < 0)
        perror("slow-server: write");
}

int main(void)
{
    /* As servers do: a write to a closed connection returns EPIPE. */
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(ls, 8) < 0 || getsockname(ls, (struct sockaddr *)&a, &len) < 0) {
        perror("slow-server");
        return 1;
    }
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) {
        perror("slow-server: accept");
        return 1;
    }
    handle_client(fd);
    close(fd);
    return 0;
}
"""

SLOW_SERVER_PY = r'''# slow-server: answers its client after 2 s. Written by `nettimeo demo`.
import socket, sys, time
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(8)
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
c.recv(4096)
time.sleep(2)                                       # the slow part
try:
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
    for i in range(64):
        c.sendall(b"x" * 16384)                     # the broken pipe
        time.sleep(0.005)
except OSError as e:
    print("slow-server: write: %s" % e.strerror, file=sys.stderr)
'''


class Out:
    def __init__(self):
        self.tty = sys.stdout.isatty() and os.environ.get("TERM", "dumb") != "dumb" \
            and "NO_COLOR" not in os.environ

    def _style(self, code, text):
        return "\033[%sm%s\033[0m" % (code, text) if self.tty else text

    def title(self, text):
        print()
        print(self._style("1", text))

    def cmd(self, text):
        print("    " + self._style("36", "$ " + text))

    def ok(self, text):
        print("    " + self._style("32", text))

    def bad(self, text):
        print("    " + self._style("31", text))

    def say(self, text=""):
        print(("    " + text) if text else "")


def silent_server():
    """A listener on a thread that accepts and never answers."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    held = []

    def loop():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            held.append(c)          # never read, never answered, never closed

    threading.Thread(target=loop, daemon=True).start()

    def stop():
        ls.close()
        for c in held:
            c.close()
    return ls.getsockname()[1], stop


def load_events(path, want, wait_s=2.0):
    """Events of the log; waits up to wait_s for one that `want` accepts."""
    deadline = time.monotonic() + wait_s
    while True:
        events = []
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(ev, dict):
                        events.append(ev)
        except OSError:
            pass
        if any(want(e) for e in events) or time.monotonic() >= deadline:
            return events
        time.sleep(0.05)


def first_line(text):
    lines = [l for l in (text or "").splitlines() if l.strip()]
    return lines[0] if lines else ""


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def build_server(tmp, out):
    """(argv, argv as shown, description, program name) of the slow
    server: C when a compiler works."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        src = os.path.join(tmp, "slow-server.c")
        exe = os.path.join(tmp, "slow-server")
        with open(src, "w") as f:
            f.write(SLOW_SERVER_C)
        r = subprocess.run([cc, "-g", "-O0", "-o", exe, src],
                           capture_output=True, text=True, cwd=tmp)
        if r.returncode == 0:
            return ["./slow-server"], ["./slow-server"], \
                "slow-server, a small C program (slow-server.c)", "slow-server"
        out.say("(could not compile slow-server.c, using python3 instead: %s)"
                % first_line(r.stderr))
    path = os.path.join(tmp, "slow-server.py")
    with open(path, "w") as f:
        f.write(SLOW_SERVER_PY)
    return [sys.executable, "slow-server.py"], ["python3", "slow-server.py"], \
        "slow-server, a small python3 program", None


def frames_text(ev, report_mod, indent):
    bt = ev.get("backtrace") or []
    if not report_mod:
        return [indent + f for f in bt[:3]]
    sym = report_mod.Symbolizer(True)
    frames = [report_mod.parse_frame(f) for f in bt[:3]]
    sym.resolve(frames)
    sym.demangle(f["symbol"] for f in frames)
    lines = []
    for i, f in enumerate(frames):
        lines.append(indent + ("" if i == 0 else "<- ") + report_mod.frame_text(sym.annotate(f)))
    return lines


def load_report_module():
    try:
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            "nettimeo_report", os.path.join(HERE, "nettimeo-report.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    except Exception:           # only makes the frames prettier
        return None


def main(argv):
    ap = argparse.ArgumentParser(
        prog="nettimeo demo",
        description="Shows nettimeo at work on real programs, in a few seconds: a client "
                    "that would hang forever cut at its deadline, a broken pipe traced to "
                    "the server's own code, and the report of both. Needs curl; uses a C "
                    "compiler when there is one. Exits 0 only when all of it was seen.")
    ap.add_argument("--keep", action="store_true",
                    help="keep the demo's directory (log, config, programs)")
    ap.add_argument("--nettimeo", default=os.path.join(HERE, "nettimeo"), help=argparse.SUPPRESS)
    ap.add_argument("--lib", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    out = Out()
    nettimeo = a.nettimeo
    if not shutil.which("curl"):
        print("nettimeo demo: needs curl (scripts/setup installs it)", file=sys.stderr)
        return 1

    tmp = tempfile.mkdtemp(prefix="nettimeo-demo.")
    os.chmod(tmp, 0o755)
    log = os.path.join(tmp, "demo.jsonl")
    conf = os.path.join(tmp, "demo.conf")
    with open(conf, "w") as f:
        f.write("# Written by `nettimeo demo`.\n"
                "[global]\n"
                "log = %s\n"
                "events = epipe econnreset timeout flush_error\n"
                "backtrace = 16\n" % log)

    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("NETTIMEO_") and k not in ("NETTIMEO_LIB", "NETTIMEO_CHECK"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env["CURL_HOME"] = tmp          # no ~/.curlrc
    ok = True
    procs = []
    stop_silent = None

    def spawn(args, **kw):
        p = subprocess.Popen(args, cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        procs.append(p)
        return p

    try:
        print("nettimeo demo: real programs, unmodified, under libnettimeo.so")
        if a.lib:
            print("  library  %s" % a.lib)
        print("  work dir %s  (config demo.conf, log demo.jsonl)" % tmp)

        # ---- 1. the hanging client --------------------------------------
        port, stop_silent = silent_server()
        url = "http://127.0.0.1:%d/" % port
        out.title("1. A client that would wait forever")
        out.say("A server on 127.0.0.1:%d accepts connections and never answers, like a" % port)
        out.say("hung backend. curl has no timeout of its own. The same request, twice, side by side:")
        out.say()
        out.cmd("curl -sS %s" % url)
        out.cmd("nettimeo run -c demo.conf -o read_timeout=2s -- curl -sS %s" % url)
        out.say()
        t0 = time.monotonic()
        plain = spawn(["curl", "-sS", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        gov = spawn([nettimeo, "run", "-c", "demo.conf", "-o", "read_timeout=2s", "--",
                     "curl", "-sS", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _, gerr = gov.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            kill_group(gov)
            _, gerr = gov.communicate()
        elapsed = time.monotonic() - t0
        gerr = gerr.decode("utf-8", "replace")
        time.sleep(max(0.0, 3.0 - (time.monotonic() - t0)))
        plain_waiting = plain.poll() is None
        plain_after = time.monotonic() - t0
        kill_group(plain)
        plain.communicate()

        cut = gov.returncode not in (0, None) and 1.6 <= elapsed <= 4.5
        out.say("with nettimeo:  %s" % (first_line(gerr) or "(no message)"))
        line = "exit status %d after %.2f s" % (gov.returncode, elapsed)
        if cut:
            out.ok("                %s: cut at its 2 s read deadline" % line)
        else:
            out.bad("                %s: expected a failure at about 2 s" % line)
            ok = False
        if plain_waiting:
            out.say("without:        still waiting after %.1f s (the demo stopped it)" % plain_after)
        else:
            out.say("without:        ended by itself (exit status %d), unexpectedly" % plain.returncode)

        def is_cut(e):
            return e.get("event") == "timeout" and e.get("pid") == gov.pid

        events = load_events(log, is_cut)
        ev = next((e for e in events if is_cut(e)), None)
        out.say()
        if ev:
            out.say("The library cut the connection and logged why (one JSON line in demo.jsonl):")
            out.say("  event=timeout timeout=%s limit_ms=%s elapsed_ms=%s action=%s"
                    % (ev.get("timeout"), ev.get("limit_ms"), ev.get("elapsed_ms"), ev.get("action")))
            out.say("  prog=%s pid=%s fd=%s %s -> %s bytes_out=%s bytes_in=%s"
                    % (ev.get("prog"), ev.get("pid"), ev.get("fd"), ev.get("local"),
                       ev.get("remote"), ev.get("bytes_out"), ev.get("bytes_in")))
            out.say("Same pid as the command: `nettimeo run` execs the program, so exit status")
            out.say("and signals are the program's own.")
        else:
            out.bad("No timeout event for pid %d in %s." % (gov.pid, log))
            ok = False
        stop_silent()
        stop_silent = None

        # ---- 2. the broken pipe --------------------------------------------
        out.title('2. A "broken pipe" nobody can explain')
        server_argv, server_shown, server_what, server_prog = build_server(tmp, out)
        out.say("%s, takes 2 s to answer. Its client" % server_what)
        out.say("gives up after 1 s. Both run under nettimeo, logging to the same file:")
        out.say()
        server = spawn([nettimeo, "run", "-c", "demo.conf", "--"] + server_argv,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([server.stdout], [], [], 10)
        sport = server.stdout.readline().decode().strip() if ready else ""
        if not sport.isdigit():
            kill_group(server)
            out.bad("slow-server did not start: %s" % first_line(server.stderr.read().decode()))
            return 1
        surl = "http://127.0.0.1:%s/" % sport
        out.cmd("nettimeo run -c demo.conf -- %s &" % " ".join(server_shown))
        out.cmd("nettimeo run -c demo.conf -o read_timeout=1s -- curl -sS %s" % surl)
        t0 = time.monotonic()
        client = spawn([nettimeo, "run", "-c", "demo.conf", "-o", "read_timeout=1s", "--",
                        "curl", "-sS", surl], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _, cerr = client.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            kill_group(client)
            _, cerr = client.communicate()
        celapsed = time.monotonic() - t0
        try:
            _, serr = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            kill_group(server)
            _, serr = server.communicate()
        serr = serr.decode("utf-8", "replace")
        out.say()
        out.say("curl gave up after %.2f s (exit status %s: %s)."
                % (celapsed, client.returncode, first_line(cerr.decode("utf-8", "replace"))))
        out.say("A second later the server wrote its answer to a connection nobody read any")
        out.say("more. Its own log says only:")
        out.say("  " + (first_line(serr) or "(nothing)"))

        def is_pipe(e):
            return e.get("event") == "epipe" and e.get("pid") == server.pid

        events = load_events(log, is_pipe)
        ev = next((e for e in events if is_pipe(e)), None)
        out.say()
        if ev and ev.get("backtrace"):
            out.say("nettimeo logged the failed %s with the connection's story and the" % ev.get("op"))
            out.say("server's own stack (innermost first):")
            out.say("  event=epipe op=%s fd=%s %s <- %s age_ms=%s bytes_out=%s peer_closed=%s"
                    % (ev.get("op"), ev.get("fd"), ev.get("local"), ev.get("remote"),
                       ev.get("age_ms"), ev.get("bytes_out"), json.dumps(ev.get("peer_closed"))))
            for l in frames_text(ev, load_report_module(), "    "):
                out.say(l)
            out.say("peer_closed=true: the client had already hung up, after its own 1 s")
            out.say("timeout. The cause of this broken pipe is on the client's side.")
            if server_prog and ev.get("prog") != server_prog:
                out.bad("(the event names prog=%s, expected %s)" % (ev.get("prog"), server_prog))
                ok = False
        else:
            out.bad("No epipe event with a backtrace for pid %d in %s." % (server.pid, log))
            ok = False

        # ---- 3. the report -----------------------------------------------------
        out.title("3. The log, summarised")
        out.cmd("nettimeo report demo.jsonl")
        rep = subprocess.run([nettimeo, "report", "demo.jsonl"], cwd=tmp, env=env,
                             capture_output=True, text=True, timeout=60)
        for l in rep.stdout.splitlines():
            print("    " + l)
        if rep.returncode != 0:
            out.bad("nettimeo report failed (exit status %d): %s"
                    % (rep.returncode, first_line(rep.stderr)))
            ok = False

        print()
        if ok:
            out.ok("Demo passed: the hanging client was cut at its deadline and the broken pipe")
            out.ok("was traced to the line of the server that wrote it.")
        else:
            out.bad("Demo FAILED: see the lines above.")
        if a.keep:
            print("    Kept %s: nettimeo report %s" % (tmp, log))
        else:
            print("    (work dir removed; `nettimeo demo --keep` keeps it)")
        return 0 if ok else 1
    finally:
        if stop_silent:
            stop_silent()
        for p in procs:
            if p.poll() is None:
                kill_group(p)
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
