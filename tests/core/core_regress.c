/* Defects a review of the connection-model change confirmed, each with a
 * small program (tests/progs/review) run with and without the library:
 * what the program prints must be the same (timings aside), or, where a
 * deadline fires, what SPEC §4 says. */
#define _GNU_SOURCE
#include "nttest_cr.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

TestSuite(regress, .timeout = 90);

/* Drop what depends on the machine's speed: " after 1.2s" and
 * ", 15173 in handler, 1.7s". */
static void strip_timings(char *s)
{
    static const char *const marks[] = {" after ", " in handler, "};
    for (size_t m = 0; m < 2; m++) {
        char *p;
        while ((p = strstr(s, marks[m]))) {
            char *q = p + strlen(marks[m]), *from = p;
            while (isdigit((unsigned char)*q) || *q == '.')
                q++;
            if (*q == 's')
                q++;
            if (m == 1) /* and the count before it */
                while (from > s && (isdigit((unsigned char)from[-1]) || from[-1] == ' ' ||
                                    from[-1] == ','))
                    from--;
            memmove(from, q, strlen(q) + 1);
        }
    }
}

static void run(const char *prog, const char *arg, const char *opts, bool preload,
                struct nt_result *r)
{
    char *path;
    cr_assert(asprintf(&path, "%s/rv_%s", NT_PROGS_DIR, prog) > 0);
    const char *const argv[] = {path, arg, NULL};
    cr_assert(nt_run_config(argv, opts, NULL, preload, 60000, r) == 0, "%s", prog);
    cr_assert(!r->timed_out, "%s hung:\n%s\n%s", prog, r->out, r->err);
    strip_timings(r->out);
    r->out_len = strlen(r->out);
    free(path);
}

static void same(const char *prog, const char *arg, const char *opts)
{
    struct nt_result with, without;
    run(prog, arg, opts, true, &with);
    run(prog, arg, opts, false, &without);
    nt_assert_same(&with, &without, prog);
    nt_result_free(&with);
    nt_result_free(&without);
}

/* close_range in one thread while another connects: a retired
 * connection was used (SIGSEGV). */
Test(regress, close_range_racing_connect) { same("t19_closerange_race", NULL, "idle_timeout=1h"); }
/* A signal handler that opens connections, interrupting the timer's
 * locking: no self-deadlock. */
Test(regress, handler_arms_while_timer_locked) { same("t5_sigarm", "3000", "idle_timeout=1h"); }
/* A dup made before connect is the same connection. */
Test(regress, dup_before_connect) { same("t15_dupnew", NULL, "idle_timeout=1s"); }
/* One long blocking write on a unix socket is not idleness. */
Test(regress, unix_long_write_not_idle) { same("t14_unix_bigwrite", NULL, "idle_timeout=1s"); }
/* Answers written through stdio end the exchange (the kernel says so). */
Test(regress, stdio_answers_end_exchanges) { same("t13_stdio_answer", NULL, "request_timeout=2s"); }
/* MSG_PEEK|MSG_WAITALL at EOF returns what is there. */
Test(regress, peek_waitall_at_eof)
{
    same("t2_peek", NULL, "request_timeout=2s");
    same("t2_peek", NULL, "read_timeout=2s");
}
/* recvmmsg at EOF counts as the kernel does, and keeps errno. */
Test(regress, recvmmsg_eof_and_errno) { same("t1_recvmmsg", NULL, ""); }
/* A pending pthread cancel acts at a governed read/send that does not
 * block, as in glibc's own wrappers (issue 17: the first, non-blocking
 * try is a raw system call). */
Test(regress, pending_cancel_acts_at_nonblocking_try)
{
    same("t20_cancel", NULL, "read_timeout=30s write_timeout=30s idle_timeout=1h");
}
/* SA_RESTART of the signal that arrived, not of every handler. */
Test(regress, restart_by_arrived_signal) { same("t17_restart", NULL, "read_timeout=5s"); }
/* A signal after data moved returns the partial count. */
Test(regress, signal_after_partial_progress)
{
    same("t9_sigpartial", NULL, "read_timeout=5s");
    same("t10_sigwrite", NULL, "write_timeout=5s");
}
/* A close, or close_range, under a blocked read: the read goes on with
 * the socket, and the program's next descriptors get their numbers. */
Test(regress, close_under_blocked_read)
{
    same("t3_closeblocked", "close", "read_timeout=5s");
    same("t3_closeblocked", "close_range", "read_timeout=5s");
}
/* Outbound: an answer that stalls half-way is cut by request_timeout
 * while the program is blocked reading the rest. */
Test(regress, outbound_stalled_answer_is_cut)
{
    struct nt_result r;
    run("t4_slowanswer", NULL, "request_timeout=2s", true, &r);
    cr_assert(strstr(r.out, "client read -> -1 (Connection timed out), 17 bytes"),
              "%s\n%s", r.out, r.err);
    nt_result_free(&r);
}
/* A socket received with recvmmsg on a socketpair is governed. */
Test(regress, scm_rights_through_recvmmsg)
{
    struct nt_result r;
    run("t11_scm", "mmsg", "idle_timeout=1s", true, &r);
    cr_assert(strstr(r.out, "readable (cut)"), "%s\n%s", r.out, r.err);
    nt_result_free(&r);
}

/* Defects a review of the fast-path, fuzzer and coalescing changes
 * confirmed (tests/progs/review/t21-t27). */
#define FAR "read_timeout=600s write_timeout=600s idle_timeout=600s request_timeout=600s"
/* POLLERR from the error queue (TX timestamps) is not a reset: a blocking
 * write and a MSG_WAITALL recv that moved bytes go on. */
Test(regress, errqueue_pollerr_is_not_a_reset)
{
    same("t21_errq_waitall", NULL, FAR);
    same("t21_errq_waitall", "r", FAR);
    same("t22_errq_mmsg", NULL, FAR);
}
/* Unix: the read that meets a reset consumes it with its partial count. */
Test(regress, unix_waitall_reset_consumed) { same("t24_unix_waitall_reset", NULL, FAR); }
/* dprintf stops at EINTR, as glibc's file write does. */
Test(regress, dprintf_eintr) { same("t25_dprintf_eintr", NULL, FAR); }
/* dprintf from a handler on an 8 KiB alternate stack (SIGSTKSZ). */
Test(regress, dprintf_on_small_altstack) { same("t26_dprintf_altstack", "8192", FAR); }
/* A blocked recv whose descriptor a raw syscall closed (out of reach:
 * the library may fail it with EBADF) never reads the bytes of the socket
 * that took its number. */
Test(regress, blocked_recv_never_reads_a_new_socket)
{
    struct nt_result r;
    run("t23_rawclose_steal", NULL, FAR, true, &r);
    cr_expect(strstr(r.out, "Y then has 6 'from-Y'") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "data='from-Y'") == NULL, "%s", r.out);
    nt_result_free(&r);
}
/* An abandoned unix exchange reports its duration (there is no kernel
 * record to take it from), with only read_timeout set. */
Test(regress, abandoned_unix_exchange_has_duration)
{
    struct nt_result r;
    run("t27_abandon_unix", NULL, "read_timeout=600s", true, &r);
    const char *x = strstr(r.err, "\"exchange_ms\":");
    cr_assert(x != NULL, "no abandoned event:\n%s", r.err);
    double ms = strtod(x + strlen("\"exchange_ms\":"), NULL);
    cr_expect(ms >= 200 && ms < 5000, "exchange_ms %g:\n%s", ms, r.err);
    nt_result_free(&r);
}

/* A socket received back through SCM_RIGHTS is a descriptor of the same
 * connection: replacing or closing the original mid-exchange abandons
 * nothing; only the last close does (the fuzzer's options configuration:
 * repro/program-more-bytes-before-peer-reset, where the false event's
 * backtrace also changed the program's timing). */
Test(regress, passed_twin_keeps_connection_open)
{
    struct nt_result with, without;
    run("t36_passed_twin_close", NULL, "read_timeout=600s", true, &with);
    run("t36_passed_twin_close", NULL, "read_timeout=600s", false, &without);
    nt_assert_same(&with, &without, "t36_passed_twin_close");
    int n = 0;
    for (const char *p = with.err; (p = strstr(p, "\"event\":\"abandoned\"")); p++) {
        n++;
        cr_expect(strstr(p, "\"op\":\"close\"") && strstr(p, "\n") > strstr(p, "\"op\":\"close\""),
                  "abandoned by something other than the last close:\n%s", with.err);
    }
    cr_expect(n == 2, "%d abandoned events, want 2 (one per connection, at its last close):\n%s", n,
              with.err);
    nt_result_free(&with);
    nt_result_free(&without);
}

/* Another preloaded library after ours that wraps sendto/recvfrom sees
 * every call the program makes, also when a deadline governs the call
 * (a review of the fast path: its first try went to send/recv). */
static void run_stacked(const char *opts, bool preload, struct nt_result *r)
{
    char pre[2048], env_opts[256];
#ifdef NT_SANITIZE
    const char *bare = NT_ASAN_LIB; /* the wrapper is instrumented too */
#else
    const char *bare = NULL;
#endif
    const char *first = preload ? nt_preload_value() : bare;
    snprintf(pre, sizeof pre, "LD_PRELOAD=%s%s%s", first ? first : "", first ? ":" : "",
             NT_PROG("libwrap_counts.so"));
    snprintf(env_opts, sizeof env_opts, "NETTIMEO_OPTIONS=%s", opts);
    struct nt_spawn_opts o = { .env = NT_ENV("NETTIMEO_CONFIG=", env_opts, pre) };
    cr_assert(nt_run(NT_ARGV(NT_PROG("rv_t37_stacked_sendto")), &o, 30000, r) == 0);
}
Test(regress, stacked_library_sees_sendto_recvfrom)
{
    static const char *const opts[] = {"read_timeout=5s write_timeout=5s", "request_timeout=5s",
                                       "idle_timeout=5s"};
    for (size_t i = 0; i < 3; i++) {
        struct nt_result with, without;
        run_stacked(opts[i], true, &with);
        run_stacked(opts[i], false, &without);
        cr_expect(strstr(without.err, "wrapped: sendto=2 recvfrom=2") != NULL, "%s", without.err);
        cr_expect(strstr(with.err, "wrapped: sendto=2 recvfrom=2") != NULL, "%s: %s", opts[i],
                  with.err);
        nt_assert_same(&with, &without, "t37_stacked_sendto");
        nt_result_free(&with);
        nt_result_free(&without);
    }
}

/* Defects a review of write coalescing confirmed (tests/progs/review
 * t28-t30): the program's output with coalescing is the kernel's. */
#define CO_HOLD "coalesce=16KiB coalesce_delay=5s"
/* A blocking write interrupted by an SA_RESTART signal once part of it
 * went returns the short count (the flush wait restarted it). */
Test(regress, coalesce_signal_after_partial_write)
{
    same("t28_co_sigshort", NULL, "coalesce=16KiB coalesce_delay=2s");
}
/* Held bytes go out before a message through a channel the library does
 * not govern, and before the program blocks reading one: on its first
 * use too, and through every call. */
Test(regress, coalesce_flush_before_other_channels)
{
    static const char *const ms[] = {"write", "dprintf", "sendfile", "splice", "sendmmsg",
                                     "read", "recv", "recvmsg", "recvmmsg"};
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
        char warm[32];
        snprintf(warm, sizeof warm, "warm-%s", ms[i]);
        same("t29_co_channel", ms[i], CO_HOLD);
        same("t29_co_channel", warm, CO_HOLD);
    }
}
/* sendfile/splice to a reset socket: the kernel's SIGPIPE kills the
 * process after other connections' held bytes went out; a SIGPIPE the
 * program blocks stays pending. */
Test(regress, coalesce_xfer_sigpipe_flushes_first)
{
    same("t30_co_xfer_sigpipe", "sendfile", CO_HOLD);
    same("t30_co_xfer_sigpipe", "splice", CO_HOLD);
    same("t30_co_xfer_sigpipe", "blocked", CO_HOLD);
}

/* Buffer mode never holds more than a non-blocking socket's send buffer
 * is sure to take: nothing acknowledged is lost at close, and exit does
 * not linger (it waited 5 s, then logged flush_error). */
Test(regress, nonblocking_buffer_holds_only_what_the_kernel_takes)
{
    struct nt_result with, without;
    run("t31_nonblock_room", NULL, "coalesce=16KiB coalesce_delay=1ms", true, &with);
    run("t31_nonblock_room", NULL, "coalesce=16KiB coalesce_delay=1ms", false, &without);
    nt_assert_same(&with, &without, "t31_nonblock_room");
    cr_expect(strstr(with.err, "flush_error") == NULL, "%s", with.err);
    cr_expect(with.elapsed_ms < 1500, "exit took %lld ms", (long long)with.elapsed_ms); /* peer: 2 s */
    nt_result_free(&with);
    nt_result_free(&without);
}

/* A third review (of the coalescing fixes above), t32-t35. */
#define CO_FAST "coalesce=16KiB coalesce_delay=1ms"
static void same_quick_exit(const char *prog)
{
    struct nt_result with, without;
    run(prog, NULL, CO_FAST, true, &with);
    run(prog, NULL, CO_FAST, false, &without);
    nt_assert_same(&with, &without, prog);
    cr_expect(strstr(with.err, "flush_error") == NULL, "%s", with.err);
    cr_expect(with.elapsed_ms < 1500, "%s: exit took %lld ms", prog,
              (long long)with.elapsed_ms); /* its peer reads after 2 s */
    nt_result_free(&with);
    nt_result_free(&without);
}
/* A buffer started by a blocking write takes no non-blocking write once
 * O_NONBLOCK is set: its room was never measured. */
Test(regress, nonblocking_after_blocking_buffer) { same_quick_exit("t32_room_after_nonblock"); }
/* TCP_NOTSENT_LOWAT makes the kernel refuse sooner than the send buffer
 * says: no non-blocking buffer then. */
Test(regress, notsent_lowat_refusals_kept) { same_quick_exit("t33_notsent_lowat"); }
/* Around sendfile/splice the signal mask stays the program's: a handler
 * sees it, a SIGPIPE kills in the handler, a handled one interrupts. */
Test(regress, sendfile_keeps_the_signal_mask)
{
    same("t34_sigpipe_mask_in_handler", NULL, CO_FAST);
    same("t35_sigpipe_during_sendfile", NULL, CO_FAST);
}

/* Vectored calls the kernel refuses whole (a NULL array or message, a
 * count out of range) go to it as made: the library read the array to
 * size the call and crashed (SIGSEGV), or turned writev's EINVAL into
 * sendmsg's EMSGSIZE. Coalescing copies what it holds, so its run leaves
 * out the unmapped buffers (a documented limit). */
Test(regress, refused_vectors_get_the_kernels_answer)
{
    same("t38_bad_vectors", NULL, "");
    same("t38_bad_vectors", NULL, FAR);
    same("t38_bad_vectors", NULL, FAR " coalesce=16KiB coalesce_mode=cork");
    same("t38_bad_vectors", "vectors", FAR " coalesce=16KiB");
}

/* A blocking splice from a pipe under write_timeout returns what the pipe
 * held, also when that was exactly one of the library's parts (it waited
 * for the pipe's writer, the program itself, for ever). */
Test(regress, splice_of_a_pipe_returns_what_it_held)
{
    same("t39_splice_pipe_parts", NULL, "write_timeout=2s");
}

/* A blocking sendfile to a slow but steady reader is not cut while the
 * peer drains (write_timeout restarts on every drain, not on POLLOUT). */
Test(regress, slow_steady_reader_not_cut_in_sendfile)
{
    same("t40_slow_reader_xfer", NULL, "write_timeout=1500ms");
}
