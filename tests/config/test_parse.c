/* The parser over fixtures: good files give the values they say, bad files
 * give exactly the expected messages, each on its line. */
#define _GNU_SOURCE
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

TestSuite(good, .timeout = 30);
TestSuite(bad, .timeout = 30);

/* ---- good fixtures ---- */

Test(good, all_keys_set_every_field)
{
    struct nt_config *cfg = parse_fixture_ok("good/all-keys.conf");
    const struct nt_global *g = nt_config_global(cfg);
    cr_expect_str_eq(g->log, "/var/log/nettimeo.jsonl");
    cr_expect_eq(g->events, NT_EV_ALL);
    cr_expect_eq(g->backtrace, 0);
    cr_expect_eq(g->sigpipe_ignore, 1);
    cr_expect_eq(g->rate_limit, 0);
    cr_expect_eq(g->inherit, 0);

    const struct nt_settings *d = nt_config_match(cfg, NULL);
    cr_expect_null(d->rule);
    cr_expect_eq(d->connect_timeout, 250000);
    cr_expect_eq(d->read_timeout, MS(500));
    cr_expect_eq(d->write_timeout, MS(1500));
    cr_expect_eq(d->idle_timeout, SEC(180));
    cr_expect_eq(d->request_timeout, SEC(3600));
    cr_expect_eq(d->max_lifetime, SEC(7200));
    cr_expect_eq(d->coalesce, 4096);
    cr_expect_eq(d->coalesce_delay, MS(2));
    cr_expect_eq(d->coalesce_mode, NT_COALESCE_CORK);
    cr_expect_eq(d->timeout_errno, EAGAIN);
    cr_expect_eq(d->expire_action, NT_EXPIRE_RESET);

    const struct nt_settings *r = match(cfg, NT_DIR_OUTBOUND, "unix:/tmp/a.sock",
                                        NULL, "curl");
    cr_expect_str_eq(r->rule, "sock", "INET keys never match a unix socket");
    cr_expect_eq(r->read_timeout, SEC(9));
    cr_expect_eq(r->coalesce_mode, NT_COALESCE_CORK);
    r = match(cfg, NT_DIR_OUTBOUND, "192.0.2.1:1000", "192.0.2.7:443", "curl");
    cr_assert_str_eq(r->rule, "everything");
    cr_expect_eq(r->connect_timeout, SEC(1));
    cr_expect_eq(r->read_timeout, SEC(2));
    cr_expect_eq(r->write_timeout, SEC(3));
    cr_expect_eq(r->idle_timeout, SEC(4));
    cr_expect_eq(r->request_timeout, SEC(5));
    cr_expect_eq(r->max_lifetime, SEC(6));
    cr_expect_eq(r->coalesce, 1u << 20);
    cr_expect_eq(r->coalesce_delay, MS(7));
    cr_expect_eq(r->coalesce_mode, NT_COALESCE_BUFFER);
    cr_expect_eq(r->timeout_errno, ETIMEDOUT);
    cr_expect_eq(r->expire_action, NT_EXPIRE_SHUTDOWN);
    cr_expect(nt_config_governs(cfg));
    nt_config_free(cfg);
}

static void expect_builtin_defaults(struct nt_config *cfg)
{
    const struct nt_global *g = nt_config_global(cfg);
    cr_expect_str_eq(g->log, "stderr");
    cr_expect_eq(g->events, NT_EV_DEFAULT);
    cr_expect_eq(g->backtrace, 16);
    cr_expect_eq(g->sigpipe_ignore, 0);
    cr_expect_eq(g->rate_limit, 50);
    cr_expect_eq(g->inherit, 1);
    const struct nt_settings *d = nt_config_match(cfg, NULL);
    cr_expect_eq(d->connect_timeout + d->read_timeout + d->write_timeout +
                 d->idle_timeout + d->request_timeout + d->max_lifetime, 0);
    cr_expect_eq(d->coalesce, 0);
    cr_expect_eq(d->coalesce_delay, MS(1));
    cr_expect_eq(d->coalesce_mode, NT_COALESCE_BUFFER);
    cr_expect_eq(d->timeout_errno, ETIMEDOUT);
    cr_expect_eq(d->expire_action, NT_EXPIRE_SHUTDOWN);
    cr_expect_not(nt_config_governs(cfg), "audit only");
    nt_config_free(cfg);
}

Test(good, builtin_defaults)
{
    expect_builtin_defaults(nt_config_default());
    expect_builtin_defaults(parse_fixture_ok("good/empty.conf"));
    expect_builtin_defaults(parse_fixture_ok("good/comments-only.conf"));
}

Test(good, spec_example)
{
    struct nt_config *cfg = parse_fixture_ok("good/spec.conf");
    const struct nt_global *g = nt_config_global(cfg);
    cr_expect_eq(g->events, NT_EV_EPIPE | NT_EV_ECONNRESET | NT_EV_TIMEOUT |
                 NT_EV_FLUSH_ERROR | NT_EV_CONFIG_ERROR | NT_EV_SUPPRESSED);
    const struct nt_settings *s = match(cfg, NT_DIR_INBOUND, "unix:/run/app/a.sock",
                                        NULL, "legacy-httpd");
    cr_expect_null(s->rule, "remote/ports need an INET connection");
    s = match(cfg, NT_DIR_INBOUND, "10.1.1.1:8443", "10.9.9.9:443", "legacy-httpd");
    cr_expect_null(s->rule, "unix_path needs a unix socket: the SPEC rule "
                   "matches nothing, as written");
    cr_expect_eq(s->connect_timeout, SEC(5));
    nt_config_free(cfg);
}

Test(good, layout_and_comments)
{
    struct nt_config *cfg = parse_fixture_ok("good/syntax.conf");
    const struct nt_global *g = nt_config_global(cfg);
    cr_expect_str_eq(g->log, "syslog");
    cr_expect_eq(g->events, NT_EV_EPIPE | NT_EV_TIMEOUT | NT_EV_ACCEPT |
                 NT_EV_CONFIG_ERROR | NT_EV_SUPPRESSED);
    const struct nt_settings *s = match(cfg, NT_DIR_OUTBOUND, NULL,
                                        "unix:/run/odd;name#1.sock", "p");
    cr_expect_str_eq(s->rule, "spaced");
    cr_expect_eq(s->read_timeout, MS(1500));
    cr_expect_eq(s->connect_timeout, SEC(2));
    s = match(cfg, NT_DIR_OUTBOUND, NULL, "unix:/run/odd", "p");
    cr_expect_null(s->rule);
    cr_expect_eq(s->read_timeout, MS(250));
    nt_config_free(cfg);
}

Test(good, crlf_bom_and_no_final_newline)
{
    struct nt_config *cfg = parse_ok("\xef\xbb\xbf[defaults]\r\nread_timeout = 2s\r\n"
                                     "[rule x]\r\nprogram = a*\r\nidle_timeout = 1m");
    cr_expect_eq(match(cfg, NT_DIR_INBOUND, NULL, NULL, "ab")->idle_timeout, SEC(60));
    cr_expect_eq(match(cfg, NT_DIR_INBOUND, NULL, NULL, "b")->read_timeout, SEC(2));
    nt_config_free(cfg);
}

/* What `nettimeo check` prints parses back to the same configuration (the
 * only difference: the "# from [defaults]" marks, as the reparsed rules set
 * every key themselves). */
Test(good, dump_parses_back_to_itself)
{
    static const char *const files[] = {
        "good/spec.conf", "good/all-keys.conf", "good/syntax.conf",
        "good/match.conf", "good/inherit.conf", "good/empty.conf",
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        struct nt_config *cfg = parse_fixture_ok(files[i]);
        char *first = dump_string(cfg);
        struct nt_config *again = parse_ok(first);
        char *second = dump_string(again);
        strip_comments(first);
        strip_comments(second);
        cr_expect_str_eq(second, first, "%s", files[i]);
        free(first);
        free(second);
        nt_config_free(cfg);
        nt_config_free(again);
    }
}

Test(good, dump_is_readable)
{
    struct nt_config *cfg = parse_fixture_ok("good/inherit.conf");
    char *text = dump_string(cfg);
    cr_expect(strstr(text, "[rule sets-read]\nprogram = r\n"
                     "connect_timeout = 3s            # from [defaults]\n"
                     "read_timeout = 40s\n") != NULL, "%s", text);
    cr_expect(strstr(text, "coalesce = 8KiB") != NULL, "%s", text);
    cr_expect(strstr(text, "rate_limit = 50/s\ninherit = yes\n") != NULL, "%s", text);
    free(text);
    nt_config_free(cfg);
}

/* ---- bad fixtures: every message, in order, on its line ---- */

struct expect {
    int line;
    const char *msg;
};

static void expect_diags(const char *what, const struct diags *d, const char *file,
                         const struct expect *e, size_t n)
{
    char text[8192];
    diags_text(d, text, sizeof text);
    cr_assert_eq((size_t)d->n, n, "%s: got %d messages, want %zu:%s", what,
                 d->n, n, text);
    for (size_t i = 0; i < n; i++) {
        cr_expect_str_eq(d->d[i].file, file);
        cr_expect_eq(d->d[i].line, e[i].line, "%s: message %zu:%s", what, i, text);
        cr_expect_str_eq(d->d[i].msg, e[i].msg, "%s: message %zu", what, i);
    }
}

static void check_bad(const char *name, const struct expect *e, size_t n)
{
    char rel[256], path[1024];
    struct diags d = { 0 };
    snprintf(rel, sizeof rel, "bad/%s", name);
    fixture_path(rel, path, sizeof path);
    cr_expect_null(nt_config_parse_file(path, diags_collect, &d),
                   "a bad file is never half-used");
    expect_diags(name, &d, path, e, n);
}

#define BAD_FIXTURE(name, ...)                                        \
    Test(bad, name)                                                   \
    {                                                                 \
        static const struct expect e[] = { __VA_ARGS__ };             \
        check_bad(#name ".conf", e, sizeof e / sizeof *e);            \
    }

#define PORT_WANT "expected a port 1..65535 or a range like 8000-8099"
#define DURATION_WANT "expected a number and a unit (250us, 500ms, 2s, 1.5s, 3m, 1h), or 0 or off"

BAD_FIXTURE(syntax,
    { 2, "'read_timeout' is outside any section (start with [global], [defaults] or [rule NAME])" },
    { 3, "missing ']' at the end of section header '[global'" },
    { 4, "empty section name (expected [global], [defaults] or [rule NAME])" },
    { 5, "unknown section '[defualts]' (did you mean '[defaults]'?)" },
    { 7, "unknown section '[sections]' (expected [global], [defaults] or [rule NAME])" },
    { 9, "missing '=' in 'just some words' (expected key = value)" },
    { 10, "missing key before '='" })

BAD_FIXTURE(keys,
    { 3, "'read_timeout' is only valid in [defaults] or a [rule] section" },
    { 4, "unknown key 'lgo' (did you mean 'log'?)" },
    { 6, "duplicate key 'log' (first set at line 5)" },
    { 9, "unknown key 'read_timout' (did you mean 'read_timeout'?)" },
    { 10, "unknown key 'Read_Timeout' (did you mean 'read_timeout'?)" },
    { 11, "unknown key 'frobnicate'" },
    { 12, "'direction' is only valid in a [rule] section" },
    { 13, "'log' is only valid in the [global] section" },
    { 14, "missing value for 'connect_timeout'" },
    { 17, "'events' is only valid in the [global] section" },
    { 19, "duplicate key 'write_timeout' (first set at line 18)" })

BAD_FIXTURE(values,
    { 3, "unknown event 'epip' in 'events' (did you mean 'epipe'?)" },
    { 3, "unknown event 'bogus' in 'events' (known: epipe econnreset timeout "
         "abandoned flush_error config_error config_loaded suppressed connect accept close, or all)" },
    { 4, "bad value '65' for 'backtrace': expected frames 0..64" },
    { 5, "bad value 'maybe' for 'sigpipe': expected keep or ignore" },
    { 6, "bad value '50/m' for 'rate_limit': expected events per second, e.g. 50/s "
         "or 50 (at most 1000000); 0 or off: unlimited" },
    { 7, "bad value 'perhaps' for 'inherit': expected yes or no" },
    { 10, "bad duration '5' for 'connect_timeout': missing unit (write e.g. 5s or 500ms)" },
    { 11, "bad duration '5x' for 'read_timeout': unknown unit (use ns, us, ms, s, m or h)" },
    { 12, "bad duration '-1s' for 'write_timeout': " DURATION_WANT },
    { 13, "bad duration '9000h' for 'idle_timeout': too large (at most 8760h)" },
    { 14, "bad duration '1.5' for 'request_timeout': missing unit (write e.g. 5s or 500ms)" },
    { 15, "bad duration 'soon' for 'max_lifetime': " DURATION_WANT },
    { 16, "bad size '16Q' for 'coalesce': unknown unit (use k/KiB or m/MiB)" },
    { 17, "bad duration '1.5' for 'coalesce_delay': missing unit (write e.g. 5s or 500ms)" },
    { 18, "bad value 'corkk' for 'coalesce_mode': expected buffer or cork" },
    { 19, "bad value 'EINTR' for 'timeout_errno': expected ETIMEDOUT or EAGAIN" },
    { 20, "bad value 'explode' for 'expire_action': expected shutdown or reset" },
    { 23, "bad size '17MiB' for 'coalesce': too large (at most 16MiB)" })

BAD_FIXTURE(match,
    { 3, "bad port '0' for 'local_port': " PORT_WANT },
    { 3, "bad port '80-70' for 'local_port': range ends below its start" },
    { 3, "bad port '99999' for 'local_port': " PORT_WANT },
    { 3, "bad port 'http' for 'local_port': " PORT_WANT },
    { 5, "bad value 'sideways' for 'direction': expected inbound, outbound or any" },
    { 8, "bad CIDR '10.0.0.300/8' for 'remote': not an IPv4 or IPv6 address" },
    { 8, "bad CIDR '::1/129' for 'remote': prefix length must be 0..128" },
    { 8, "bad CIDR '10.0.0.0/33' for 'remote': prefix length must be 0..32" },
    { 8, "bad CIDR 'fe80::1%eth0' for 'remote': not an IPv4 or IPv6 address" },
    { 11, "bad pattern '/run/[abc' for 'unix_path': '[' without a closing ']'" },
    { 12, "bad pattern 'legacy-\\' for 'program': pattern ends with a lone '\\'" })

BAD_FIXTURE(rules,
    { 3, "section [global] takes no name, got 'extra'" },
    { 3, "section [global] repeated (first at line 2)" },
    { 6, "section [defaults] repeated (first at line 5)" },
    { 11, "missing rule name (write [rule NAME])" },
    { 14, "bad rule name 'two words': use up to 64 letters, digits, '_', '-' or '.'" },
    { 15, "duplicate rule name 'web' (first at line 8)" },
    { 16, "bad duration '5' for 'read_timeout': missing unit (write e.g. 5s or 500ms)" })

/* ---- bad text that a fixture file cannot hold well ---- */

static void check_bad_text(const char *text, size_t len, const struct expect *e,
                           size_t n)
{
    struct diags d = { 0 };
    cr_expect_null(nt_config_parse_string(text, len, "t.conf", diags_collect, &d));
    expect_diags(text, &d, "t.conf", e, n);
}

Test(bad, nul_byte)
{
    static const char text[] = "[defaults]\nread_timeout = 1s\0junk\nidle_timeout = x\n";
    static const struct expect e[] = {
        { 2, "line contains a NUL byte" },
        { 3, "bad duration 'x' for 'idle_timeout': " DURATION_WANT },
    };
    check_bad_text(text, sizeof text - 1, e, 2);
}

Test(bad, empty_lists_and_garbage_bytes)
{
    static const char text[] = "[global]\nevents = , ,\n[rule r]\nlocal_port = ,\n"
                               "remote = \x01\xff\n";
    static const struct expect e[] = {
        { 2, "missing value for 'events'" },
        { 4, "missing value for 'local_port'" },
        { 5, "bad CIDR '\?\?' for 'remote': not an IPv4 or IPv6 address" },
    };
    check_bad_text(text, sizeof text - 1, e, 3);
}

Test(bad, comment_right_after_equals_is_no_value)
{
    static const char text[] = "[global]\nlog =# a comment\nsigpipe=;x\n";
    static const struct expect e[] = {
        { 2, "missing value for 'log'" },
        { 3, "missing value for 'sigpipe'" },
    };
    check_bad_text(text, sizeof text - 1, e, 2);
}

Test(bad, long_values_are_cut_in_messages)
{
    char text[2048];
    struct diags d = { 0 };
    snprintf(text, sizeof text, "[defaults]\nread_timeout = %01000d\n", 7);
    cr_expect_null(nt_config_parse_string(text, strlen(text), "t", diags_collect, &d));
    cr_assert_eq(d.n, 1);
    cr_expect_lt(strlen(d.d[0].msg), 200, "%s", d.d[0].msg);
    cr_expect(strstr(d.d[0].msg, "...") != NULL, "%s", d.d[0].msg);
}

static void count_diag(void *ctx, const char *file, int line, const char *msg)
{
    (void)file;
    (void)line;
    (void)msg;
    ++*(int *)ctx;
}

Test(bad, many_errors_are_capped)
{
    size_t len = 0;
    char *text = NULL;
    FILE *f = open_memstream(&text, &len);
    for (int i = 0; i < 5000; i++)
        fputs("nonsense\n", f);
    fclose(f);
    int calls = 0;
    cr_expect_null(nt_config_parse_string(text, len, "t", count_diag, &calls));
    cr_expect_eq(calls, 101, "100 messages and one 'too many errors'");
    cr_expect_null(nt_config_parse_string(text, len, "t", NULL, NULL),
                   "no callback is fine");
    free(text);
}
