/* NETTIMEO_OPTIONS: [defaults] keys that override the file's [defaults],
 * seen by every rule that does not set the key itself. */
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

TestSuite(options, .timeout = 30);

static const char *const file =
    "[defaults]\nread_timeout = 5s\nconnect_timeout = 1s\n"
    "[rule own]\nprogram = own\nread_timeout = 30s\n"
    "[rule inherits]\nprogram = inh\nidle_timeout = 1m\n";

Test(options, override_defaults_and_inheriting_rules)
{
    struct nt_config *cfg = parse_ok(file);
    struct diags d = { 0 };
    cr_assert_eq(nt_config_apply_options(cfg, " read_timeout=2s  coalesce=4k\t"
                                         "timeout_errno=eagain ", diags_collect, &d), 0);
    cr_assert_eq(d.n, 0);
    const struct nt_settings *s = nt_config_match(cfg, NULL);
    cr_expect_eq(s->read_timeout, SEC(2));
    cr_expect_eq(s->connect_timeout, SEC(1), "untouched keys keep the file's value");
    cr_expect_eq(s->coalesce, 4096);
    cr_expect_eq(s->timeout_errno, EAGAIN);

    s = match(cfg, NT_DIR_OUTBOUND, NULL, NULL, "inh");
    cr_expect_str_eq(s->rule, "inherits");
    cr_expect_eq(s->read_timeout, SEC(2), "a rule inherits the overridden default");
    cr_expect_eq(s->idle_timeout, SEC(60));
    cr_expect_eq(s->coalesce, 4096);

    s = match(cfg, NT_DIR_OUTBOUND, NULL, NULL, "own");
    cr_expect_eq(s->read_timeout, SEC(30), "a rule's own value stays");
    cr_expect(nt_config_governs(cfg));
    nt_config_free(cfg);
}

Test(options, without_a_file)
{
    struct nt_config *cfg = nt_config_default();
    cr_expect_not(nt_config_governs(cfg));
    cr_assert_eq(nt_config_apply_options(cfg, "connect_timeout=1s", NULL, NULL), 0);
    cr_expect_eq(nt_config_match(cfg, NULL)->connect_timeout, SEC(1));
    cr_expect(nt_config_governs(cfg), "options alone can govern");
    nt_config_free(cfg);
}

Test(options, later_wins_and_empty_is_fine)
{
    struct nt_config *cfg = nt_config_default();
    cr_assert_eq(nt_config_apply_options(cfg, "read_timeout=1s read_timeout=3s",
                                         NULL, NULL), 0);
    cr_expect_eq(nt_config_match(cfg, NULL)->read_timeout, SEC(3));
    cr_expect_eq(nt_config_apply_options(cfg, "", NULL, NULL), 0);
    cr_expect_eq(nt_config_apply_options(cfg, "  \t ", NULL, NULL), 0);
    cr_expect_eq(nt_config_apply_options(cfg, NULL, NULL, NULL), 0);
    cr_expect_eq(nt_config_match(cfg, NULL)->read_timeout, SEC(3));
    nt_config_free(cfg);
}

Test(options, every_error_reported_and_nothing_applied)
{
    struct nt_config *cfg = parse_ok(file);
    struct diags d = { 0 };
    cr_expect_eq(nt_config_apply_options(cfg, "read_timeout=1s read_timout=2s "
                                         "log=syslog direction=inbound junk "
                                         "idle_timeout=5 coalesce= local_port=80,81",
                                         diags_collect, &d), -1);
    static const char *const want[] = {
        "unknown key 'read_timout' (did you mean 'read_timeout'?)",
        "'log' cannot be set in NETTIMEO_OPTIONS, which takes [defaults] keys only",
        "'direction' cannot be set in NETTIMEO_OPTIONS, which takes [defaults] keys only",
        "missing '=' in 'junk' (expected key=value)",
        "bad duration '5' for 'idle_timeout': missing unit (write e.g. 5s or 500ms)",
        "missing value for 'coalesce'",
        "'local_port' cannot be set in NETTIMEO_OPTIONS, which takes [defaults] keys only",
    };
    cr_assert_eq(d.n, 7);
    for (int i = 0; i < 7; i++) {
        cr_expect_str_eq(d.d[i].file, "NETTIMEO_OPTIONS");
        cr_expect_eq(d.d[i].line, 0);
        cr_expect_str_eq(d.d[i].msg, want[i]);
    }
    cr_expect_eq(nt_config_match(cfg, NULL)->read_timeout, SEC(5), "cfg unchanged");
    cr_expect_eq(match(cfg, NT_DIR_INBOUND, NULL, NULL, "inh")->read_timeout, SEC(5));
    nt_config_free(cfg);
}
