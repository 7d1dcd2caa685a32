/* Unit tests of the per-call-site rate limit (ratelimit.c). */
#include <criterion/criterion.h>

#include "nt_config.h"
#include "audit/ratelimit.h"

TestSuite(ratelimit, .timeout = 30);

static const struct nt_rl_site site = { .caller = (void *)0x1234,
                                        .kind = NT_EV_EPIPE, .op = "write" };

Test(ratelimit, limits_per_window_and_reports_the_rest)
{
    uint64_t key = nt_rl_key(site.caller, site.kind, site.op, NULL), due;
    int passed = 0;
    for (int i = 0; i < 10; i++)
        passed += nt_rl_admit(key, 100, 3, &site, &due);
    cr_assert_eq(passed, 3);
    /* the next window: the first event passes and brings the count */
    cr_assert(nt_rl_admit(key, 101, 3, &site, &due));
    cr_assert_eq(due, 7);
    cr_assert(nt_rl_admit(key, 101, 3, &site, &due));
    cr_assert_eq(due, 0);
}

Test(ratelimit, zero_is_unlimited)
{
    uint64_t key = nt_rl_key(site.caller, site.kind, site.op, NULL), due;
    for (int i = 0; i < 1000; i++)
        cr_assert(nt_rl_admit(key, 5, 0, &site, &due));
}

Test(ratelimit, call_sites_and_kinds_are_separate)
{
    uint64_t a = nt_rl_key((void *)0x1000, NT_EV_EPIPE, "write", NULL);
    uint64_t b = nt_rl_key((void *)0x2000, NT_EV_EPIPE, "write", NULL);
    uint64_t c = nt_rl_key((void *)0x1000, NT_EV_ECONNRESET, "write", NULL);
    uint64_t t1 = nt_rl_key(NULL, NT_EV_TIMEOUT, "timer", "idle_timeout");
    uint64_t t2 = nt_rl_key(NULL, NT_EV_TIMEOUT, "timer", "max_lifetime");
    cr_assert(a != b && a != c && b != c && t1 != t2);
    uint64_t due;
    cr_assert(nt_rl_admit(a, 1, 1, &site, &due));
    cr_assert(!nt_rl_admit(a, 1, 1, &site, &due));
    cr_assert(nt_rl_admit(b, 1, 1, &site, &due));
    cr_assert(nt_rl_admit(c, 1, 1, &site, &due));
}

static uint64_t drained;
static const char *drained_op;

static void count_held(const struct nt_rl_site *s, uint64_t n, void *arg)
{
    drained += n;
    drained_op = s->op;
}

Test(ratelimit, drain_reports_once)
{
    uint64_t key = nt_rl_key(site.caller, site.kind, site.op, NULL), due;
    for (int i = 0; i < 50; i++)
        nt_rl_admit(key, 9, 10, &site, &due);
    nt_rl_drain(count_held, NULL);
    cr_assert_eq(drained, 40);
    cr_assert_str_eq(drained_op, "write");
    drained = 0;
    nt_rl_drain(count_held, NULL);
    cr_assert_eq(drained, 0);
}

/* More call sites than slots: the rest share one entry, still limited. */
Test(ratelimit, full_table_still_limits)
{
    uint64_t due;
    for (uintptr_t i = 1; i <= 4 * NT_RL_SLOTS; i++) {
        struct nt_rl_site s = { .caller = (void *)(i * 16), .kind = NT_EV_EPIPE };
        nt_rl_admit(nt_rl_key(s.caller, s.kind, NULL, NULL), 1, 1, &s, &due);
    }
    int passed = 0;
    for (uintptr_t i = 1; i <= 1000; i++) {
        struct nt_rl_site s = { .caller = (void *)(0x100000 + i * 16),
                                .kind = NT_EV_EPIPE };
        passed += nt_rl_admit(nt_rl_key(s.caller, s.kind, NULL, NULL), 1, 1,
                              &s, &due);
    }
    cr_assert_lt(passed, 1000);
    nt_rl_drain(count_held, NULL);
    cr_assert_gt(drained, 0);
}
