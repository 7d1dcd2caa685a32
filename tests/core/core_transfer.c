/* Byte-exact transfers through the library: every address family, every
 * way of waiting (blocking, poll, select, epoll) and every call family,
 * against echo_server in each of its modes. Both processes run under the
 * library, then neither; the checksums and counts printed must agree. */
#define _GNU_SOURCE
#include "nttest_cr.h"

#include <criterion/parameterized.h>

static const char *const server_modes[] = {"thread", "poll", "select", "epoll"};
static const char *const client_modes[] = {"block", "poll", "select", "epoll"};
static const char *const call_families[] = {"rw", "rwv", "sr", "msg", "to", "mmsg",
                                            "sendfile", "splice"};
#define NFAM 3
#define NCLIENT 4
#define NCALLS 8

/* Indexes only: Criterion may run a parameterized test in a fresh exec of
 * this binary, where pointers in the parameters would not be valid. */
struct xcase {
    int fam, client, calls, server;
};

ParameterizedTestParameters(transfer, matrix)
{
    static struct xcase cases[NFAM * NCLIENT * NCALLS];
    size_t n = 0;
    for (int f = 0; f < NFAM; f++)
        for (int c = 0; c < NCLIENT; c++)
            for (int k = 0; k < NCALLS; k++, n++)   /* cycle the server modes too */
                cases[n] = (struct xcase){f, c, k, (int)(n % 4)};
    return cr_make_param_array(struct xcase, cases, n);
}

TestSuite(transfer, .timeout = 30);

ParameterizedTest(struct xcase *c, transfer, matrix)
{
    char what[128];
    snprintf(what, sizeof what, "%s client %s/%s, server %s", nt_family_name(c->fam),
             client_modes[c->client], call_families[c->calls], server_modes[c->server]);
    cr_log_info("%s", what);
    nt_check_echo_both(server_modes[c->server], c->fam, 2,
                       NT_ARGV(NT_PROG("xfer_client"), "-m", client_modes[c->client], "-c",
                               call_families[c->calls], "-n", "200k", "-k", "7000", "-r", "2",
                               "@ADDR"),
                       NULL, what);
}

/* One large transfer per waiting style in big chunks: many partial
 * reads and writes, full socket buffers on both sides. */
Test(transfer, large_chunks)
{
    for (int c = 0; c < NCLIENT; c++)
        nt_check_echo_both(server_modes[c], NT_TCP4, 1,
                           NT_ARGV(NT_PROG("xfer_client"), "-m", client_modes[c], "-n", "8m",
                                   "-k", "256k", "@ADDR"),
                           NULL, client_modes[c]);
}

/* Many short connections: the fd table sees numbers reused again and
 * again, on both the accepting and the connecting side. */
Test(transfer, many_connections)
{
    nt_check_echo_both("epoll", NT_TCP4, 200,
                       NT_ARGV(NT_PROG("xfer_client"), "-m", "poll", "-n", "1000", "-r", "200",
                               "@ADDR"),
                       NULL, "200 connections");
}
