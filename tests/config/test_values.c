/* Single values: durations, sizes, and the glob matcher against fnmatch. */
#include "helpers.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <fnmatch.h>

TestSuite(values, .timeout = 30);

static const struct { const char *text; nt_ns ns; } good_durations[] = {
    { "0", 0 }, { "off", 0 }, { "OFF", 0 }, { "0s", 0 }, { "0.0", 0 },
    { "1ns", 1 }, { "250us", 250000 }, { "250\xc2\xb5s", 250000 },
    { "500ms", MS(500) }, { "2s", SEC(2) }, { "1.5s", MS(1500) },
    { "0.25s", MS(250) }, { ".5s", MS(500) }, { "3m", SEC(180) },
    { "1h", SEC(3600) }, { "1.5h", SEC(5400) }, { "2 s", SEC(2) },
    { "10MS", MS(10) }, { "8760h", SEC(8760LL * 3600) },
    { "0.000000001s", 1 }, { "1.0000000001s", SEC(1) },
};

Test(values, good_durations)
{
    for (size_t i = 0; i < sizeof good_durations / sizeof *good_durations; i++) {
        nt_ns ns = -1;
        cr_assert_eq(nt_parse_duration(good_durations[i].text, &ns), 0,
                     "'%s' rejected", good_durations[i].text);
        cr_expect_eq(ns, good_durations[i].ns, "'%s' gave %lld",
                     good_durations[i].text, (long long)ns);
    }
}

Test(values, bad_durations)
{
    static const char *const bad[] = {
        "", "5", "1.5", "s", "-1s", "5x", "5 sec", "1.s", "5s5", "ms",
        "8761h", "99999999999999999999s", "0.1ns", "1e3s", "+5s", "5 s s",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nt_ns ns = 12345;
        cr_expect_eq(nt_parse_duration(bad[i], &ns), -1, "'%s' accepted", bad[i]);
    }
}

Test(values, durations_print_back_exactly)
{
    static const nt_ns samples[] = { 1, 999, 1000, MS(1), MS(1500), SEC(60),
                                     SEC(90), SEC(3600), SEC(3660) + 1 };
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        char buf[32];
        nt_ns back = -1;
        ntc_format_duration(samples[i], buf, sizeof buf);
        cr_assert_eq(nt_parse_duration(buf, &back), 0, "%s", buf);
        cr_expect_eq(back, samples[i], "%s", buf);
    }
}

static const struct { const char *text; uint64_t bytes; } good_sizes[] = {
    { "0", 0 }, { "off", 0 }, { "1", 1 }, { "100b", 100 }, { "100B", 100 },
    { "16k", 16384 }, { "16K", 16384 }, { "16KB", 16384 }, { "16KiB", 16384 },
    { "16kib", 16384 }, { "1m", 1 << 20 }, { "1M", 1 << 20 },
    { "1MB", 1 << 20 }, { "1MiB", 1 << 20 }, { "2 KiB", 2048 },
    { "1g", 1u << 30 },
};

Test(values, good_sizes)
{
    for (size_t i = 0; i < sizeof good_sizes / sizeof *good_sizes; i++) {
        uint64_t n = 7;
        cr_assert_eq(nt_parse_size(good_sizes[i].text, &n), 0, "'%s' rejected",
                     good_sizes[i].text);
        cr_expect_eq(n, good_sizes[i].bytes, "'%s' gave %llu", good_sizes[i].text,
                     (unsigned long long)n);
    }
}

Test(values, bad_sizes)
{
    static const char *const bad[] = {
        "", "k", "-1", "1.5k", "16Q", "16kk", "16 KiB x", "99999999999999999999",
        "18014398509481984g",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t n;
        cr_expect_eq(nt_parse_size(bad[i], &n), -1, "'%s' accepted", bad[i]);
    }
}

/* Our allocation-free glob must agree with fnmatch(3) on what it supports. */
Test(values, glob_agrees_with_fnmatch)
{
    static const char *const pats[] = {
        "*", "?", "a*", "*.sock", "/run/*.sock", "/run/*/x", "/run/**",
        "legacy-*", "[abc]x", "[!abc]x", "[^a]x", "[a-c]*", "[]]", "[!]]",
        "a\\*b", "\\[x", "*a*b*c", "/*/*", "[a-]", "*/", "a?c", "/run/app/*", "a\\/b",
    };
    static const char *const strs[] = {
        "", "a", "ab", "x.sock", "/run/a.sock", "/run/a/b.sock", "/run/a/x",
        "/run/", "legacy-srv", "legacy", "ax", "bx", "dx", "]", "a*b", "axb",
        "[x", "aXbYc", "abc", "/a/b", "-", "a/", "/run/app/s.sock", "a/c",
    };
    for (size_t i = 0; i < sizeof pats / sizeof *pats; i++) {
        cr_assert_null(ntc_glob_check(pats[i]), "%s", pats[i]);
        for (size_t j = 0; j < sizeof strs / sizeof *strs; j++) {
            for (int pathname = 0; pathname <= 1; pathname++) {
                int want = fnmatch(pats[i], strs[j], pathname ? FNM_PATHNAME : 0) == 0;
                cr_expect_eq(ntc_glob_match(pats[i], strs[j], pathname), want,
                             "glob '%s' on '%s' (pathname %d): want %d",
                             pats[i], strs[j], pathname, want);
            }
        }
    }
}

Test(values, bad_globs)
{
    cr_expect_not_null(ntc_glob_check("[abc"));
    cr_expect_not_null(ntc_glob_check("abc\\"));
    cr_expect_not_null(ntc_glob_check("[!"));
}

Test(values, nearest_names)
{
    static const char *const names[] = { "read_timeout", "write_timeout",
                                         "epipe", "rule" };
    cr_expect_str_eq(ntc_nearest("read_timout", names, 4, sizeof *names),
                     "read_timeout");
    cr_expect_str_eq(ntc_nearest("Read_Timeout", names, 4, sizeof *names),
                     "read_timeout");
    cr_expect_str_eq(ntc_nearest("wirte_timeout", names, 4, sizeof *names),
                     "write_timeout");
    cr_expect_str_eq(ntc_nearest("epip", names, 4, sizeof *names), "epipe");
    cr_expect_null(ntc_nearest("bogus", names, 4, sizeof *names));
    cr_expect_null(ntc_nearest("timeout", names, 4, sizeof *names));
}
