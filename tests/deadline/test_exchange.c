/* Exchanges and call semantics (issue 13, SPEC §4): request_timeout is
 * per exchange, never per connection, for every common program shape;
 * every call keeps the kernel's semantics under a deadline; `abandoned`
 * tells the story of a bare EOF. tests/progs/exchange_prog plays both
 * ends; each case runs with and without the library. */
#define _GNU_SOURCE
#include "nttest_cr.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(exchange, .timeout = 90);

static void run_mode(const char *mode, const char *opts, const char *conf, bool preload,
                     struct nt_result *r)
{
    cr_assert(nt_run_config(NT_ARGV(NT_PROG("exchange_prog"), mode), opts, conf, preload, 30000, r) == 0,
              "%s: not started", mode);
}

/* Same stdout with the library (opts) as without; exit 0; and (unless
 * idle connections of the fixture may be cut) no deadline fired. */
static void same_outcome(const char *mode, const char *opts, bool fixture_idles)
{
    struct nt_result with, without;
    run_mode(mode, opts, NULL, true, &with);
    run_mode(mode, opts, NULL, false, &without);
    nt_assert_exit(&without, 0, mode);
    nt_assert_exit(&with, 0, mode);
    nt_assert_same(&with, &without, mode);
    cr_assert(fixture_idles || !strstr(with.err, "\"event\":\"timeout\""),
              "%s: a deadline fired:\n%s", mode, with.err);
    nt_result_free(&with);
    nt_result_free(&without);
}

static void same_as_without(const char *mode, const char *opts)
{
    same_outcome(mode, opts, false);
}

/* Parked keep-alive connections are never cut by request_timeout. */
Test(exchange, poll_per_readiness_server_keeps_parked_connection)
{
    same_as_without("poll-server", "request_timeout=1s");
}

Test(exchange, eagain_client_keeps_parked_connection)
{
    same_as_without("eagain-client", "request_timeout=1s");
}

Test(exchange, epoll_server_keeps_parked_connection)
{
    same_as_without("epoll-server", "request_timeout=1s");
    same_as_without("epoll2-server", "request_timeout=1s");
}

/* idle_timeout starts when the connection is established. (The sockets
 * that fill the listener's queue connect later and sit idle: they may be
 * cut; the connect that takes 3 s must not be.) */
Test(exchange, idle_timeout_waits_for_the_connect)
{
    same_outcome("slow-connect", "idle_timeout=1s", true);
}

/* Call semantics under a deadline. */
Test(exchange, peek_waitall)
{
    same_as_without("peek-waitall", "read_timeout=5s request_timeout=5s");
}

Test(exchange, zero_length_read)
{
    same_as_without("zero-read", "request_timeout=5s");
    same_as_without("zero-read", "read_timeout=5s");
}

Test(exchange, blocking_sendmmsg_sends_every_message)
{
    same_as_without("sendmmsg", "write_timeout=20s");
}

Test(exchange, errqueue_never_blocks)
{
    same_as_without("errqueue", "read_timeout=5s");
}

/* A blocked read is restarted after a signal exactly when the kernel
 * would restart it, judged by the handler of the signal that arrived. */
Test(exchange, sa_restart_by_the_signal_that_arrived)
{
    same_as_without("sigmix", "read_timeout=10s");
}

/* haproxy asks for a non-blocking connect's result with connect() again:
 * after connect_timeout aborted it, every way of asking says ETIMEDOUT. */
Test(exchange, connect_again_after_abort)
{
    struct nt_result r;
    run_mode("connect-again", "connect_timeout=1s", NULL, true, &r);
    nt_assert_exit(&r, 0, "connect-again");
    cr_assert(strstr(r.out, "first=EINPROGRESS poll=1 again=ETIMEDOUT so_error="),
              "connect() again after the abort:\n%s\n%s", r.out, r.err);
    nt_result_free(&r);
}

/* The seed story: a server closes after reading a request and the client
 * sees a bare EOF; the log says who left whom, from where. */
Test(exchange, abandoned_event)
{
    char *log = nt_path("abandon.jsonl"), *conf;
    cr_assert(asprintf(&conf, "[global]\nlog = %s\n", log) > 0);
    struct nt_result r;
    run_mode("abandon", "", conf, true, &r);
    nt_assert_exit(&r, 0, "abandon");
    struct nt_jsonl j;
    cr_assert(nt_jsonl_load(&j, log) == 0);
    cr_assert_eq(nt_jsonl_count(&j, "abandoned"), 1, "one abandoned event:\n%s", j.buf);
    const char *ev = nt_jsonl_nth(&j, "abandoned", 0);
    char v[64];
    cr_assert(nt_json_get(ev, "dir", v, sizeof v) && !strcmp(v, "inbound"), "%s", ev);
    cr_assert_eq(nt_json_num(ev, "request_bytes", -1), 3, "%s", ev);
    cr_assert_eq(nt_json_num(ev, "answer_bytes", -1), 0, "%s", ev);
    cr_assert(nt_json_get(ev, "backtrace", v, sizeof v) && strstr(v, "server_story"),
              "the close's call site: %s", ev);
    nt_jsonl_free(&j);
    nt_result_free(&r);
    /* a server that answered abandons nothing */
    unlink(log);
    run_mode("answer", "", conf, true, &r);
    nt_assert_exit(&r, 0, "answer");
    if (nt_jsonl_load(&j, log) == 0) {
        cr_assert_eq(nt_jsonl_count(&j, "abandoned"), 0, "%s", j.buf);
        nt_jsonl_free(&j);
    }
    nt_result_free(&r);
    free(conf);
    free(log);
}

/* Python asyncio (epoll event loop, read once per readiness): parked
 * keep-alive connections outlive request_timeout. */
Test(exchange, python_asyncio_server_keepalive)
{
    const char *script =
        "import asyncio, socket, time\n"
        "async def handle(r, w):\n"
        "    while True:\n"
        "        d = await r.read(100)\n"
        "        if not d: break\n"
        "        w.write(b'pong'); await w.drain()\n"
        "    w.close()\n"
        "async def main():\n"
        "    srv = await asyncio.start_server(handle, '127.0.0.1', 0)\n"
        "    port = srv.sockets[0].getsockname()[1]\n"
        "    r, w = await asyncio.open_connection('127.0.0.1', port)\n"
        "    for i in range(3):\n"
        "        if i: await asyncio.sleep(2)\n"
        "        w.write(b'ping'); await w.drain()\n"
        "        print(i, await r.read(100))\n"
        "    w.close(); srv.close()\n"
        "asyncio.run(main())\n";
    struct nt_spawn_opts o = { .env = NT_ENV("NETTIMEO_OPTIONS=request_timeout=1s") };
    struct nt_result with, without;
    cr_assert(nt_run_both(NT_ARGV("/usr/bin/python3", "-c", script), &o, 30000, &with,
                          &without) == 0);
    nt_assert_exit(&with, 0, "asyncio");
    nt_assert_same(&with, &without, "asyncio keep-alive");
    cr_assert(strstr(with.out, "2 b'pong'"), "%s\n%s", with.out, with.err);
    nt_result_free(&with);
    nt_result_free(&without);
}

/* Node.js (libuv, epoll): an HTTP keep-alive client and server in one
 * process; the connection parks 2 s between requests. */
Test(exchange, nodejs_http_keepalive)
{
    if (access("/usr/bin/node", X_OK) != 0)
        cr_skip_test("no /usr/bin/node here");
    const char *script =
        "const http = require('http');\n"
        "const srv = http.createServer((q, s) => s.end('pong'));\n"
        "srv.keepAliveTimeout = 10000;\n"
        "srv.listen(0, '127.0.0.1', async () => {\n"
        "  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });\n"
        "  const port = srv.address().port;\n"
        "  const get = () => new Promise((ok, ko) => http.get({ port, agent, host: '127.0.0.1' },\n"
        "    r => { let b = ''; r.on('data', d => b += d); r.on('end', () => ok(b)); }).on('error', ko));\n"
        "  for (let i = 0; i < 3; i++) {\n"
        "    if (i) await new Promise(r => setTimeout(r, 2000));\n"
        "    try { console.log(i, await get()); } catch (e) { console.log(i, e.code); }\n"
        "  }\n"
        "  agent.destroy(); srv.close();\n"
        "});\n";
    struct nt_spawn_opts o = { .env = NT_ENV("NETTIMEO_OPTIONS=request_timeout=1s") };
    struct nt_result with, without;
    cr_assert(nt_run_both(NT_ARGV("/usr/bin/node", "-e", script), &o, 30000, &with,
                          &without) == 0);
    nt_assert_exit(&with, 0, "node");
    nt_assert_same(&with, &without, "node keep-alive");
    cr_assert(strstr(with.out, "2 pong"), "%s\n%s", with.out, with.err);
    nt_result_free(&with);
    nt_result_free(&without);
}

/* Every cut has its event, written before the program can see the cut:
 * fork-per-connection children that _exit at the EOF the library caused
 * (30 cuts, 30 events), none claiming the peer closed. */
Test(exchange, every_cut_has_its_event)
{
    char *log = nt_path("cuts.jsonl"), *conf;
    cr_assert(asprintf(&conf, "[global]\nlog = %s\nbacktrace = 0\nrate_limit = 0\n"
                              "[rule in]\ndirection = inbound\nidle_timeout = 1s\n", log) > 0);
    struct nt_result r;
    run_mode("fork-cuts", "", conf, true, &r);
    nt_assert_exit(&r, 0, "fork-cuts");
    cr_assert(strstr(r.out, "children ended=30"), "%s\n%s", r.out, r.err);
    struct nt_jsonl j;
    cr_assert(nt_jsonl_load(&j, log) == 0);
    cr_assert_eq(nt_jsonl_count(&j, "timeout"), 30, "30 cuts, 30 events:\n%s", j.buf);
    for (size_t i = 0; i < 30; i++) {
        char v[16];
        const char *ev = nt_jsonl_nth(&j, "timeout", i);
        cr_assert(nt_json_get(ev, "peer_closed", v, sizeof v) && !strcmp(v, "false"),
                  "only the library closed: %s", ev);
    }
    nt_jsonl_free(&j);
    nt_result_free(&r);
    free(conf);
    free(log);
}
