/* Criterion assertions over nttest results. Include this (it includes
 * criterion.h and nttest.h) in test files. */
#ifndef NTTEST_CR_H
#define NTTEST_CR_H

#include <criterion/criterion.h>
#include <stdio.h>

#include "nttest.h"

/* The program ran to a normal exit with `code`; on failure prints the
 * status and the captured stderr. */
#define nt_assert_exit(r, code, what)                                          \
    do {                                                                       \
        char st_[64];                                                          \
        cr_assert(nt_exited((r), (code)), "%s: %s, expected exit %d\nstdout:\n%s\nstderr:\n%s", \
                  (what), nt_status_str((r)->status, st_, sizeof st_), (code), \
                  (r)->out ? (r)->out : "", (r)->err ? (r)->err : "");         \
    } while (0)

/* Same exit status and stdout with and without the library. */
#define nt_assert_same(with, without, what)                                    \
    do {                                                                       \
        char a_[64], b_[64];                                                   \
        cr_assert(nt_same_result((with), (without)),                           \
                  "%s differs with the library:\n with: %s\n%s\n without: %s\n%s\n" \
                  " stderr with:\n%s", (what),                                 \
                  nt_status_str((with)->status, a_, sizeof a_), (with)->out,   \
                  nt_status_str((without)->status, b_, sizeof b_), (without)->out, \
                  (with)->err);                                                \
    } while (0)

/* Two nt_echo_run results (with, without the library) agree. */
#define nt_assert_echo_same(with, without, what)                               \
    do {                                                                       \
        char a_[64], b_[64], c_[64], d_[64];                                   \
        cr_assert(nt_echo_run_same((with), (without)),                         \
                  "%s:\n with:    client %s: %s%s server %s%s: %s\n"          \
                  " without: client %s: %s%s server %s%s: %s", (what),         \
                  nt_status_str((with)->client.status, a_, sizeof a_),         \
                  (with)->client.out, (with)->client.err,                      \
                  nt_status_str((with)->server_status, b_, sizeof b_),         \
                  (with)->server_exited ? "" : " (stopped)", (with)->server_out, \
                  nt_status_str((without)->client.status, c_, sizeof c_),      \
                  (without)->client.out, (without)->client.err,                \
                  nt_status_str((without)->server_status, d_, sizeof d_),      \
                  (without)->server_exited ? "" : " (stopped)", (without)->server_out); \
    } while (0)

/* Run argv with and without the library: it must exit `code` with the
 * library (code < 0: any status), and both runs must agree on status and
 * stdout. */
static inline void nt_check_run_both(const char *const argv[], const struct nt_spawn_opts *o,
                                     int code, const char *what)
{
    struct nt_result with, without;
    cr_assert(nt_run_both(argv, o, 30000, &with, &without) == 0, "%s: not started", what);
    if (code >= 0)
        nt_assert_exit(&with, code, what);
    nt_assert_same(&with, &without, what);
    nt_result_free(&with);
    nt_result_free(&without);
}

/* nt_echo_run_both + nt_assert_echo_same. */
static inline void nt_check_echo_both(const char *server_mode, enum nt_family f, long conns,
                                      const char *const client[], const struct nt_spawn_opts *o,
                                      const char *what)
{
    struct nt_echo_run with, without;
    cr_assert(nt_echo_run_both(server_mode, f, conns, client, o, 30000, &with, &without) == 0,
              "%s: echo_server did not start", what);
    nt_assert_echo_same(&with, &without, what);
    nt_echo_run_free(&with);
    nt_echo_run_free(&without);
}

/* elapsed_ms within [0.8 x expected, expected + slack]. */
#define nt_assert_elapsed(elapsed_ms, expected_ms, slack_ms)                   \
    cr_assert(nt_elapsed_ok((elapsed_ms), (expected_ms), (slack_ms)),          \
              "elapsed %lld ms, expected %lld ms (-20%%, +%lld ms)",           \
              (long long)(elapsed_ms), (long long)(expected_ms), (long long)(slack_ms))

/* curl deadlocks in setlocale() when an ASan runtime is preloaded into it,
 * with or without nettimeo (LD_PRELOAD=libasan.so curl hangs): suites
 * skip their curl cases in the sanitizer pass. */
#ifdef NT_SANITIZE
#define NT_SKIP_CURL_UNDER_ASAN() \
    cr_skip_test("curl hangs with a preloaded ASan runtime, library or not")
#else
#define NT_SKIP_CURL_UNDER_ASAN() ((void)0)
#endif

#endif
