/* Rule selection: first match wins; ports, ranges, CIDRs (v4, v6, mapped),
 * unix path and program globs, direction; inheritance from [defaults]. */
#include "helpers.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <string.h>

TestSuite(match, .timeout = 30);

#define IN NT_DIR_INBOUND
#define OUT NT_DIR_OUTBOUND

static const struct probe {
    int dir;
    const char *local, *remote, *prog;
    const char *rule;        /* "-": [defaults] */
    nt_ns read_timeout;
} probes[] = {
    /* IPv6 networks and a bare address (= /128) */
    { OUT, NULL, "[::1]:9", "p", "admin-v6", SEC(11) },
    { OUT, NULL, "[2001:db8:1::5]:443", "p", "admin-v6", SEC(11) },
    { OUT, NULL, "[::2]:9", "p", "catch-outbound", SEC(18) },
    { OUT, NULL, "[2001:db9::1]:443", "p", "catch-outbound", SEC(18) },
    /* IPv4 networks with a port list; mapped peers match IPv4 networks */
    { OUT, NULL, "10.1.2.3:5432", "p", "lan", SEC(12) },
    { OUT, NULL, "10.1.2.3:6379", "p", "lan", SEC(12) },
    { OUT, NULL, "10.1.2.3:80", "p", "catch-outbound", SEC(18) },
    { OUT, NULL, "[::ffff:10.1.2.3]:6379", "p", "lan", SEC(12) },
    { OUT, NULL, "[::ffff:10.1.2.3]:80", "p", "catch-outbound", SEC(18) },
    { OUT, NULL, "192.168.1.200:5432", "p", "lan", SEC(12) },
    { OUT, NULL, "192.168.2.1:5432", "p", "catch-outbound", SEC(18) },
    { OUT, NULL, "11.0.0.1:5432", "p", "catch-outbound", SEC(18) },
    /* a rule's direction limits it: lan is outbound only */
    { IN, "10.0.0.1:22", "10.1.2.3:5432", "p", "-", SEC(2) },
    /* an IPv4 network written as ::ffff:a.b.c.d/prefix matches both forms */
    { OUT, NULL, "172.20.0.1:1", "p", "mapped-as-v6", SEC(13) },
    { OUT, NULL, "[::ffff:172.31.255.255]:1", "p", "mapped-as-v6", SEC(13) },
    { OUT, NULL, "172.32.0.1:1", "p", "catch-outbound", SEC(18) },
    /* local ports, lists and ranges, IPv4 and IPv6 */
    { IN, "0.0.0.0:80", "203.0.113.9:50000", "p", "web", SEC(14) },
    { IN, "0.0.0.0:8000", "203.0.113.9:50000", "p", "web", SEC(14) },
    { IN, "0.0.0.0:8099", "203.0.113.9:50000", "p", "web", SEC(14) },
    { IN, "0.0.0.0:8100", "203.0.113.9:50000", "p", "-", SEC(2) },
    { IN, "0.0.0.0:7999", "203.0.113.9:50000", "p", "-", SEC(2) },
    { IN, "[::]:443", "[2001:db8::1]:50000", "p", "admin-v6", SEC(11) },
    { IN, "[::]:443", "[2001:db9::1]:50000", "p", "web", SEC(14) },
    { IN, NULL, NULL, "p", "-", SEC(2) },
    /* unix path globs: '*' stays within one path component */
    { IN, "unix:/run/app/api.sock", NULL, "p", "app-sock", SEC(15) },
    { OUT, NULL, "unix:/run/app/api.sock", "p", "app-sock", SEC(15) },
    { IN, "unix:/run/app/sub/x.sock", NULL, "p", "-", SEC(2) },
    { IN, "unix:/run/app/api.socket", NULL, "p", "-", SEC(2) },
    { IN, "unix:@nettimeo-test", NULL, "p", "abstract", SEC(16) },
    { IN, "unix:", NULL, "p", "-", SEC(2) },
    /* unix sockets never match INET keys, INET sockets never match paths */
    { IN, "unix:/run/x.sock", "unix:/run/y.sock", "p", "-", SEC(2) },
    /* program globs */
    { IN, "1.2.3.4:9", NULL, "legacy-server", "legacy", SEC(17) },
    { IN, "1.2.3.4:9", NULL, "legacy", "-", SEC(2) },
    { IN, "1.2.3.4:9", NULL, NULL, "-", SEC(2) },
};

ParameterizedTestParameters(match, probe)
{
    static int index[sizeof probes / sizeof *probes];
    for (size_t i = 0; i < sizeof index / sizeof *index; i++)
        index[i] = (int)i;
    return cr_make_param_array(int, index, sizeof index / sizeof *index);
}

ParameterizedTest(int *i, match, probe)
{
    const struct probe *p = &probes[*i];
    struct nt_config *cfg = parse_fixture_ok("good/match.conf");
    const struct nt_settings *s = match(cfg, p->dir, p->local, p->remote, p->prog);
    const char *got = s->rule ? s->rule : "-";
    cr_expect_str_eq(got, p->rule, "%s local %s remote %s prog %s: got %s",
                     p->dir == IN ? "inbound" : "outbound", p->local, p->remote,
                     p->prog, got);
    cr_expect_eq(s->read_timeout, p->read_timeout);
    cr_expect_eq(s->connect_timeout, SEC(1), "inherited by every rule");
    nt_config_free(cfg);
}

Test(match, no_key_means_defaults)
{
    struct nt_config *cfg = parse_fixture_ok("good/match.conf");
    cr_expect_null(nt_config_match(cfg, NULL)->rule);
    nt_config_free(cfg);
}

Test(match, first_match_wins)
{
    struct nt_config *cfg = parse_ok("[rule a]\nremote_port = 80\nread_timeout = 1s\n"
                                     "[rule b]\nremote_port = 80\nread_timeout = 2s\n"
                                     "[rule c]\nread_timeout = 3s\n");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "1.1.1.1:80", "p"), "a");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "1.1.1.1:81", "p"), "c");
    cr_expect_str_eq(match_name(cfg, IN, NULL, NULL, NULL), "c",
                     "a rule with no match keys matches everything");
    nt_config_free(cfg);
}

Test(match, all_keys_of_a_rule_must_match)
{
    struct nt_config *cfg = parse_ok("[rule r]\ndirection = outbound\n"
                                     "remote = 10.0.0.0/8\nremote_port = 443\n"
                                     "program = curl\nread_timeout = 1s\n");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "10.0.0.1:443", "curl"), "r");
    cr_expect_str_eq(match_name(cfg, IN, NULL, "10.0.0.1:443", "curl"), "-");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "11.0.0.1:443", "curl"), "-");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "10.0.0.1:80", "curl"), "-");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "10.0.0.1:443", "wget"), "-");
    nt_config_free(cfg);
}

Test(match, cidr_edges)
{
    struct nt_config *cfg = parse_ok(
        "[rule host-bits]\nremote = 10.1.2.3/16\n"      /* host bits ignored */
        "[rule v6-odd]\nremote = 2001:db8:ff80::/41\n"
        "[rule all-v4]\nremote = 0.0.0.0/0\n"
        "[rule all-v6]\nremote = ::/0\n");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "10.1.200.1:1", "p"), "host-bits");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "[2001:db8:ff80::1]:1", "p"), "v6-odd");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "[2001:db8:ffff::1]:1", "p"), "v6-odd");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "[2001:db8:ff00::1]:1", "p"), "all-v6");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "[::ffff:1.2.3.4]:1", "p"), "all-v4",
                     "a mapped peer is an IPv4 peer first");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "8.8.8.8:53", "p"), "all-v4");
    cr_expect_str_eq(match_name(cfg, OUT, NULL, "unix:/x", "p"), "-");
    nt_config_free(cfg);
}

Test(match, rules_inherit_unset_settings)
{
    struct nt_config *cfg = parse_fixture_ok("good/inherit.conf");
    const struct nt_settings *r = match(cfg, IN, NULL, NULL, "r");
    cr_expect_str_eq(r->rule, "sets-read");
    cr_expect_eq(r->read_timeout, SEC(40));
    cr_expect_eq(r->connect_timeout, SEC(3));
    cr_expect_eq(r->coalesce, 8192);
    cr_expect_eq(r->timeout_errno, EAGAIN);
    const struct nt_settings *n = match(cfg, IN, NULL, NULL, "n");
    cr_expect_str_eq(n->rule, "sets-nothing");
    cr_expect_eq(n->read_timeout, SEC(4));
    const struct nt_settings *x = match(cfg, IN, NULL, NULL, "x");
    cr_expect_eq(x->coalesce, 0, "a rule can switch off what [defaults] set");
    cr_expect_eq(x->read_timeout, 0);
    cr_expect_eq(x->timeout_errno, ETIMEDOUT);
    cr_expect_eq(x->connect_timeout, SEC(3));
    nt_config_free(cfg);
}

Test(match, governs)
{
    struct nt_config *cfg = parse_ok("[global]\nsigpipe = ignore\n[defaults]\n"
                                     "coalesce_delay = 5ms\ntimeout_errno = EAGAIN\n");
    cr_expect_not(nt_config_governs(cfg), "no deadline, no coalescing");
    nt_config_free(cfg);
    cfg = parse_ok("[rule only-one]\nprogram = x\nmax_lifetime = 1h\n");
    cr_expect(nt_config_governs(cfg), "one rule with a deadline is enough");
    nt_config_free(cfg);
    cfg = parse_ok("[defaults]\ncoalesce = 1k\n");
    cr_expect(nt_config_governs(cfg));
    nt_config_free(cfg);
}
