#!/usr/bin/env python3
"""nettimeo report: summarise nettimeo audit logs (JSON Lines).

Run as `nettimeo report [OPTIONS] [LOG...]`; reads stdin when no LOG is
given or LOG is "-". Gzip-compressed logs (rotated *.gz) are read as is.
Lines that are not JSON objects are counted and skipped, never fatal: a
log captured from stderr mixes events with the program's own messages.

Python 3 standard library only.
"""

import argparse
import collections
import datetime
import gzip
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys

PROG = "nettimeo report"

# "symbol+0xoff (module+0xoff)" or "?? (module+0xoff)": SPEC 5.
FRAME_RE = re.compile(
    r"^(?P<sym>.*?)(?:\+0x(?P<soff>[0-9a-fA-F]+))? "
    r"\((?P<mod>.*)\+0x(?P<moff>[0-9a-fA-F]+)\)$")

TIMER_KEY = ("<timer>",)
NONE_KEY = ("<none>",)


# ---- reading --------------------------------------------------------------

class Input:
    def __init__(self):
        self.sources = []
        self.lines = 0           # non-empty lines seen
        self.events = []
        self.malformed = 0       # looked like JSON, did not parse as an event
        self.first_malformed = None
        self.other = 0           # not JSON at all (program output on stderr)
        self.errors = []

    def read(self, name):
        label = "<stdin>" if name == "-" else name
        self.sources.append(label)
        try:
            if name == "-":
                raw = sys.stdin.buffer
                head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
            else:
                raw = open(name, "rb")
                head = raw.read(2)
                raw.seek(0)
        except OSError as e:
            self.errors.append("%s: %s" % (label, e.strerror or e))
            return
        try:
            stream = gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw
            for n, line in enumerate(stream, 1):
                self.take(line, label, n)
        except (OSError, EOFError) as e:
            # A truncated .gz, an I/O error: keep what was read.
            self.errors.append("%s: %s" % (label, e))
        finally:
            if name != "-":
                raw.close()

    def take(self, line, label, n):
        text = line.decode("utf-8", "replace").strip()
        if not text:
            return
        self.lines += 1
        if not text.startswith("{"):
            self.other += 1
            return
        try:
            ev = json.loads(text)
        except ValueError:
            ev = None
        if not isinstance(ev, dict) or not isinstance(ev.get("event"), str):
            self.malformed += 1
            if self.first_malformed is None:
                self.first_malformed = "%s:%d" % (label, n)
            return
        self.events.append(normalise(ev))


STR_FIELDS = ("ts", "prog", "op", "dir", "local", "remote", "rule", "errno",
              "timeout", "action", "suppressed_event")
NUM_FIELDS = ("pid", "fd", "limit_ms", "elapsed_ms", "count", "dropped")


def normalise(ev):
    """The event with every field the report uses of the expected type
    (else None), so that no odd line can trip the summary."""
    for k in STR_FIELDS:
        if k in ev and not isinstance(ev[k], str):
            ev[k] = None
    for k in NUM_FIELDS:
        v = ev.get(k)
        if k in ev and (isinstance(v, bool) or not isinstance(v, (int, float))
                        or (isinstance(v, float) and not math.isfinite(v))):
            ev[k] = None
    for k in ("count", "dropped"):
        if isinstance(ev.get(k), float):
            ev[k] = int(ev[k]) if abs(ev[k]) < 1e18 else None
    bt = ev.get("backtrace")
    if "backtrace" in ev:
        ev["backtrace"] = [f if isinstance(f, str) else json.dumps(f) for f in bt] \
            if isinstance(bt, list) else None
    return ev


def parse_ts(ts):
    if not isinstance(ts, str):
        return None
    try:
        t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t


# ---- frames and symbols ---------------------------------------------------

def parse_frame(s):
    """dict(symbol, offset, module, module_offset) for one backtrace frame."""
    m = FRAME_RE.match(s) if isinstance(s, str) else None
    if not m:
        return {"frame": s, "symbol": None, "offset": None, "module": None,
                "module_offset": None}
    sym = m.group("sym")
    return {
        "frame": s,
        "symbol": None if sym in ("", "??") else sym,
        "offset": int(m.group("soff"), 16) if m.group("soff") else None,
        "module": None if m.group("mod") in ("", "??") else m.group("mod"),
        "module_offset": int(m.group("moff"), 16),
    }


class Symbolizer:
    """addr2line for names the log lacks ("??") and for file:line;
    c++filt for mangled names. Both optional: without them the frames are
    shown as logged."""

    def __init__(self, enabled):
        self.addr2line = shutil.which("addr2line") if enabled else None
        self.cxxfilt = shutil.which("c++filt") if enabled else None
        self.cache = {}      # (module, offset) -> (function or None, "file:line" or None)
        self.names = {}

    def resolve(self, frames):
        if not self.addr2line:
            return
        todo = collections.defaultdict(set)
        for f in frames:
            mod, off = f["module"], f["module_offset"]
            if mod and (mod, off) not in self.cache and os.path.isfile(mod):
                todo[mod].add(off)
        for mod, offs in todo.items():
            offs = sorted(offs)
            # Frames hold return addresses: the call is the byte before.
            args = [self.addr2line, "-f", "-C", "-e", mod] + \
                   ["0x%x" % max(o - 1, 0) for o in offs]
            try:
                out = subprocess.run(args, capture_output=True, text=True,
                                     timeout=20).stdout.splitlines()
            except (OSError, subprocess.SubprocessError):
                out = []
            for i, off in enumerate(offs):
                fn = out[2 * i] if 2 * i < len(out) else "??"
                loc = out[2 * i + 1] if 2 * i + 1 < len(out) else "??"
                loc = loc.split(" (discriminator")[0].strip()
                if loc.startswith("??") or loc.endswith(":?") or loc.endswith(":0"):
                    loc = None
                else:
                    loc = os.path.basename(loc.rsplit(":", 1)[0]) + ":" + loc.rsplit(":", 1)[1]
                self.cache[(mod, off)] = (None if fn.startswith("??") else fn, loc)

    def demangle(self, names):
        names = sorted({n for n in names if n and n.startswith("_Z")} - set(self.names))
        if not names or not self.cxxfilt:
            return
        try:
            out = subprocess.run([self.cxxfilt], input="\n".join(names) + "\n",
                                 capture_output=True, text=True, timeout=20).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            return
        if len(out) == len(names):
            self.names.update(zip(names, out))

    def annotate(self, f):
        """The frame with "function" (best name) and "location" filled in."""
        g = dict(f)
        fn, loc = self.cache.get((f["module"], f["module_offset"]), (None, None))
        sym = f["symbol"]
        g["function"] = self.names.get(sym, sym) if sym else fn
        g["location"] = loc
        return g


def frame_text(g):
    name = g["function"] or "??"
    if g["symbol"] and g["offset"] is not None:
        name += "+0x%x" % g["offset"]
    where = " at " + g["location"] if g["location"] else ""
    mod = os.path.basename(g["module"]) if g["module"] else "??"
    return "%s%s  (%s+0x%x)" % (name, where, mod, g["module_offset"] or 0)


# ---- summarising ----------------------------------------------------------

def host_of(addr):
    """"10.0.0.5:443" -> "10.0.0.5"; "[::1]:80" -> "::1"; paths unchanged."""
    if addr.startswith("["):
        return addr[1:addr.find("]")] if "]" in addr else addr
    if re.match(r"^\d+\.\d+\.\d+\.\d+:\d+$", addr):
        return addr.rsplit(":", 1)[0]
    return addr


def service_of(addr):
    """":8080" for an IP address, the path for a Unix socket."""
    if not addr:
        return None
    if re.search(r"(\]|\d):\d+$", addr):
        return ":" + addr.rsplit(":", 1)[1]
    return addr


def peer_key(ev):
    remote = ev.get("remote")
    d = ev.get("dir") if isinstance(ev.get("dir"), str) else "?"
    if remote is None and "remote" not in ev:
        return None
    if not isinstance(remote, str) or remote == "":
        label = "(unnamed unix socket)" if remote == "" else "(unknown)"
    elif d == "inbound":
        svc = service_of(ev.get("local") if isinstance(ev.get("local"), str) else "")
        label = host_of(remote) + (" -> " + svc if svc else "")
    else:
        label = remote
    return (d, label)


def fmt_ms(ms):
    if not isinstance(ms, (int, float)):
        return "?"
    if ms >= 3600000 and ms % 3600000 == 0:
        return "%dh" % (ms // 3600000)
    if ms >= 60000 and ms % 60000 == 0:
        return "%dm" % (ms // 60000)
    if ms >= 1000:
        return ("%.3f" % (ms / 1000.0)).rstrip("0").rstrip(".") + "s"
    return ("%.3f" % ms).rstrip("0").rstrip(".") + "ms"


def fmt_span(seconds):
    if seconds < 1:
        return "%d ms" % round(seconds * 1000)
    if seconds < 60:
        return "%.1f s" % seconds
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    parts = ["%dd" % d] if d else []
    if h or d:
        parts.append("%dh" % h)
    parts.append("%dm" % m)
    if not d:
        parts.append("%ds" % s)
    return " ".join(parts)


def counter_list(c, total=None):
    """"epipe 3, econnreset 1"; just "epipe" when it is the whole count."""
    items = c.most_common()
    if total is not None and len(items) == 1 and items[0][1] == total:
        return str(items[0][0])
    return ", ".join("%s %d" % (k, n) for k, n in items)


def held_back(e):
    """(kind, count) that a `suppressed` event stands for, else None."""
    if e["event"] != "suppressed" or not isinstance(e.get("count"), int):
        return None
    k = e.get("suppressed_event")
    return (k if isinstance(k, str) else "?"), e["count"]


def summarise(inp, top, depth, nframes, sym):
    evs = inp.events
    kinds = collections.Counter(e["event"] for e in evs)
    kinds_held = collections.Counter()
    for e in evs:
        h = held_back(e)
        if h:
            kinds_held[h[0]] += h[1]
    suppressed = sum(kinds_held.values())
    dropped = sum(e["dropped"] for e in evs if isinstance(e.get("dropped"), int))

    times = [t for t in (parse_ts(e.get("ts")) for e in evs) if t]
    time_range = None
    if times:
        a, b = min(times), max(times)
        time_range = {"first": a.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                      "last": b.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                      "seconds": round((b - a).total_seconds(), 6)}

    progs = collections.Counter()
    prog_pids = collections.defaultdict(set)
    for e in evs:
        p = e.get("prog") if isinstance(e.get("prog"), str) else "?"
        progs[p] += 1
        prog_pids[p].add(e.get("pid"))

    timeouts = collections.Counter()
    t_limits = collections.defaultdict(set)
    t_actions = collections.defaultdict(collections.Counter)
    for e in evs:
        if e["event"] == "timeout":
            k = e.get("timeout") if isinstance(e.get("timeout"), str) else "?"
            timeouts[k] += 1
            if isinstance(e.get("limit_ms"), (int, float)):
                t_limits[k].add(e["limit_ms"])
            if isinstance(e.get("action"), str):
                t_actions[k][e["action"]] += 1

    # A call site is the first `depth` frames (1: the instruction in the
    # program that made the call); it is shown with the stack most of its
    # events had. `suppressed` events add what they held back to theirs.
    sites = collections.Counter()      # logged + held back, for sorting
    site_kinds = collections.defaultdict(collections.Counter)
    site_held = collections.defaultdict(collections.Counter)
    site_progs = collections.defaultdict(collections.Counter)
    site_stacks = collections.defaultdict(collections.Counter)
    for e in evs:
        bt = e.get("backtrace")
        if not isinstance(bt, list):
            continue                   # config events
        h = held_back(e)
        if bt:
            key = tuple(str(f) for f in bt[:depth])
        elif h:
            continue
        else:
            key = TIMER_KEY if e.get("op") == "timer" else NONE_KEY
        prog = e.get("prog") if isinstance(e.get("prog"), str) else "?"
        if h:
            sites[key] += h[1]
            site_held[key][h[0]] += h[1]
            site_stacks[key][tuple(str(f) for f in bt[:nframes])] += 0
        else:
            sites[key] += 1
            site_kinds[key][e["event"]] += 1
            if bt:
                site_stacks[key][tuple(str(f) for f in bt[:nframes])] += 1
        site_progs[key][prog] += 1

    peers = collections.Counter()
    peer_kinds = collections.defaultdict(collections.Counter)
    for e in evs:
        k = peer_key(e)
        if k:
            peers[k] += 1
            peer_kinds[k][e["event"]] += 1

    rules = collections.Counter()
    for e in evs:
        if "rule" in e:
            r = e["rule"]
            rules[r if isinstance(r, str) else None] += 1

    def cut(c):
        items = c.most_common()
        return (items if top <= 0 else items[:top]), \
               (0 if top <= 0 else max(len(items) - top, 0))

    shown_sites, more_sites = cut(sites)
    stacks = {key: (site_stacks[key].most_common(1)[0][0] if site_stacks[key] else key)
              for key, _ in shown_sites}
    frames = [parse_frame(f) for key, _ in shown_sites
              if key not in (TIMER_KEY, NONE_KEY) for f in stacks[key]]
    sym.resolve(frames)
    sym.demangle(f["symbol"] for f in frames)

    out = collections.OrderedDict()
    out["sources"] = inp.sources
    out["lines"] = inp.lines
    out["events"] = len(evs)
    out["malformed_lines"] = inp.malformed
    out["first_malformed"] = inp.first_malformed
    out["other_lines"] = inp.other
    out["held_back"] = suppressed
    out["dropped"] = dropped
    out["time_range"] = time_range
    # Which side wrote each event: the preloaded library, or kernel mode
    # ("via": "kernel", SPEC section 8).
    out["by_via"] = dict(collections.Counter(
        e.get("via") if isinstance(e.get("via"), str) else "library" for e in evs))
    items, more = cut(kinds + kinds_held)
    items = [(k, kinds.get(k, 0)) for k, _ in items]
    out["by_event"] = [{"event": k, "count": n, "held_back": kinds_held.get(k, 0)}
                       for k, n in items]
    omitted = {"by_event": more}
    items, more = cut(timeouts)
    out["by_timeout"] = [{"timeout": k, "count": n, "limits_ms": sorted(t_limits[k]),
                          "actions": dict(t_actions[k])} for k, n in items]
    omitted["by_timeout"] = more
    out["by_call_site"] = []
    for key, n in shown_sites:
        site = {"count": sum(site_kinds[key].values()),
                "held_back": sum(site_held[key].values()),
                "events": dict(site_kinds[key].most_common()),
                "held_back_events": dict(site_held[key].most_common()),
                "progs": dict(site_progs[key].most_common())}
        if key == TIMER_KEY:
            site["frames"] = []
            site["note"] = "no call in progress: the deadline fired by itself"
        elif key == NONE_KEY:
            site["frames"] = []
            site["note"] = "no backtrace (backtrace = 0?)"
        else:
            site["frames"] = [sym.annotate(parse_frame(f)) for f in stacks[key]]
        out["by_call_site"].append(site)
    omitted["by_call_site"] = more_sites
    items, more = cut(peers)
    out["by_peer"] = [{"peer": k[1], "dir": k[0], "count": n,
                       "events": dict(peer_kinds[k].most_common())} for k, n in items]
    omitted["by_peer"] = more
    items, more = cut(rules)
    out["by_rule"] = [{"rule": k, "count": n} for k, n in items]
    omitted["by_rule"] = more
    items, more = cut(progs)
    out["by_program"] = [{"prog": k, "count": n, "pids": len(prog_pids[k])} for k, n in items]
    omitted["by_program"] = more
    out["omitted"] = omitted
    return out


# ---- printing --------------------------------------------------------------

def print_text(s, w):
    def line(text=""):
        w.write(text + "\n")

    src = ", ".join(s["sources"]) if len(s["sources"]) <= 3 else \
        "%s and %d more files" % (", ".join(s["sources"][:2]), len(s["sources"]) - 2)
    line("nettimeo report: %s" % src)
    tr = s["time_range"]
    if tr:
        a = tr["first"].replace("T", " ")[:23]
        b = tr["last"].replace("T", " ")[:23]
        if b[:10] == a[:10]:
            b = b[11:]
        line("  time range   %s -> %s UTC  (%s)" % (a, b, fmt_span(tr["seconds"])))
    ev = "  events       %d" % s["events"]
    if s["held_back"]:
        ev += "  (and %d more held back by rate_limit, counted in 'suppressed' events)" % s["held_back"]
    line(ev)
    if s["dropped"]:
        line("  lost         %d event%s the log could not take (counted in 'dropped')"
             % (s["dropped"], "" if s["dropped"] == 1 else "s"))
    if s["by_program"]:
        line("  programs     " + ", ".join(
            "%s (%d event%s, %d process%s)" % (p["prog"], p["count"], "" if p["count"] == 1 else "s",
                                              p["pids"], "" if p["pids"] == 1 else "es")
            for p in s["by_program"][:5]) +
            (", ..." if len(s["by_program"]) > 5 or s["omitted"]["by_program"] else ""))
    if s.get("by_via") and set(s["by_via"]) != {"library"}:
        line("  written by   " + ", ".join(
            "%s %d" % ("kernel mode" if k == "kernel" else k, n)
            for k, n in sorted(s["by_via"].items())))
    if s["other_lines"]:
        line("  skipped      %d line%s not JSON (program output?)"
             % (s["other_lines"], "" if s["other_lines"] == 1 else "s"))
    if s["malformed_lines"]:
        line("  skipped      %d malformed line%s (first at %s)"
             % (s["malformed_lines"], "" if s["malformed_lines"] == 1 else "s", s["first_malformed"]))
    if not s["events"]:
        line("")
        line("No events.")
        return

    width = max(len(str(x["count"])) for sec in ("by_event", "by_call_site", "by_peer", "by_rule")
                for x in s[sec]) if s["by_event"] else 1
    width = max(width, 3)

    def section(title, rows, omitted):
        line("")
        line(title)
        tw = max([len(t) for _, t, x in rows if x and "\n" not in t] or [0])
        for count, text, extra in rows:
            first, *rest = text.split("\n")
            line("  %*d  %s" % (width, count, ("%-*s   %s" % (tw, first, extra)) if extra else first))
            for r in rest:
                line("  %*s  %s" % (width, "", r))
        if omitted:
            line("  %*s  ... and %d more" % (width, "", omitted))

    section("By kind", [(x["count"], x["event"],
                         "+%d held back" % x["held_back"] if x["held_back"] else "")
                        for x in s["by_event"]], s["omitted"]["by_event"])
    if s["by_timeout"]:
        section("Timeouts", [(x["count"], x["timeout"],
                              "limit %s; action %s" % (", ".join(fmt_ms(v) for v in x["limits_ms"]) or "?",
                                                 ", ".join("%s %d" % a for a in
                                                           sorted(x["actions"].items(),
                                                                  key=lambda a: -a[1]))))
                             for x in s["by_timeout"]], s["omitted"]["by_timeout"])
    if s["by_call_site"]:
        rows = []
        for x in s["by_call_site"]:
            what = counter_list(collections.Counter(x["events"]), x["count"])
            if x["held_back"]:
                held = collections.Counter(x["held_back_events"])
                if set(held) == set(x["events"]) and len(held) == 1:
                    what += " (+%d held back)" % x["held_back"]
                else:
                    what = (what + ", " if what else "") + "+%d held back (%s)" % (
                        x["held_back"], counter_list(held))
            head = "%s  in %s" % (what, ", ".join(x["progs"]))
            if x["frames"]:
                body = [frame_text(x["frames"][0])] + \
                       ["  <- " + frame_text(f) for f in x["frames"][1:]]
            else:
                body = ["(%s)" % x["note"]]
            rows.append((x["count"], "\n".join([head] + ["  " + b for b in body]), ""))
        section("By call site (innermost frame first)", rows, s["omitted"]["by_call_site"])
    if s["by_peer"]:
        pw = max(len(x["peer"]) for x in s["by_peer"])
        section("By peer", [(x["count"], "%-*s  %-8s  %s" % (pw, x["peer"], x["dir"],
                                                           counter_list(collections.Counter(x["events"]), x["count"])), "")
                            for x in s["by_peer"]], s["omitted"]["by_peer"])
    if s["by_rule"]:
        section("By rule", [(x["count"], x["rule"] if x["rule"] is not None
                             else "(no rule: [defaults])", "") for x in s["by_rule"]],
                s["omitted"]["by_rule"])


def main(argv):
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Summarise nettimeo audit logs (JSON Lines): events by kind, by call site "
                    "(the backtrace, symbolised), by peer and by rule, with counts and the time "
                    "range. Reads stdin when no LOG is given or LOG is '-'; .gz files are read "
                    "as is. Lines that are not events are counted and skipped.")
    ap.add_argument("logs", nargs="*", metavar="LOG", help="audit log files (JSON Lines)")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    ap.add_argument("--top", type=int, default=10, metavar="N",
                    help="entries per section (default 10; 0 = all)")
    ap.add_argument("--depth", type=int, default=1, metavar="N",
                    help="backtrace frames that tell call sites apart (default 1: the "
                         "instruction that made the call)")
    ap.add_argument("--frames", type=int, default=3, metavar="N",
                    help="frames shown per call site (default 3)")
    ap.add_argument("--no-symbolize", action="store_true",
                    help="do not run addr2line/c++filt: frames exactly as logged")
    a = ap.parse_args(argv)
    if a.depth < 1 or a.frames < 1:
        ap.error("--depth and --frames must be at least 1")

    inp = Input()
    for name in a.logs or ["-"]:
        inp.read(name)
    for err in inp.errors:
        sys.stderr.write("%s: %s\n" % (PROG, err))
    if inp.errors and not inp.events and not inp.lines:
        return 2
    s = summarise(inp, a.top, a.depth, max(a.depth, a.frames), Symbolizer(not a.no_symbolize))
    if a.json:
        sys.stdout.write(json.dumps(s, allow_nan=False) + "\n")
    else:
        print_text(s, sys.stdout)
    sys.stdout.flush()
    return 2 if inp.errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:              # nettimeo report ... | head
        try:
            sys.stdout = io.TextIOWrapper(open(os.devnull, "wb"))
        except OSError:
            pass
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
