/* libFuzzer target for the config parser.
 *
 * Beyond "no crash, leak or UB" it checks properties that must hold for any
 * input: every message is one printable line; a config that parses dumps
 * to text that parses again to the same config; matching never fails; and
 * NETTIMEO_OPTIONS and the value parsers survive the same bytes. */
#define _GNU_SOURCE
#include "nt_config.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_diag(void *ctx, const char *file, int line, const char *msg)
{
    (void)ctx;
    if (!file || line < 0 || !msg || !*msg || strlen(msg) >= 512)
        abort();
    for (const char *p = msg; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            abort();    /* messages go to terminals and JSON: printable only */
}

static void must_not_report(void *ctx, const char *file, int line,
                            const char *msg)
{
    fprintf(stderr, "dump does not parse back: %s:%d: %s\n%s\n", file, line,
            msg, (const char *)ctx);
    abort();
}

/* Where a comment starts, by the format's rule: '#' at the start of a
 * line or after a blank; elsewhere it is part of a value. */
static char *comment_start(char *line, char *eol)
{
    for (char *p = line; p < eol; p++)
        if (*p == '#' && (p == line || p[-1] == ' ' || p[-1] == '\t'))
            return p;
    return NULL;
}

/* The dump without its comments ("# from [defaults]" marks). */
static char *dump_uncommented(const struct nt_config *cfg)
{
    char *text = NULL, *out;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    nt_config_dump(cfg, f);
    fclose(f);
    out = text;
    for (char *line = text; *line;) {
        char *eol = strchrnul(line, '\n');
        char *hash = comment_start(line, eol);
        char *end = hash ? hash : eol;
        while (end > line && end[-1] == ' ')
            end--;
        if (end > line || !hash) {
            memmove(out, line, (size_t)(end - line));
            out += end - line;
            *out++ = '\n';
        }
        line = *eol ? eol + 1 : eol;
    }
    *out = '\0';
    return text;
}

static void check_round_trip(const struct nt_config *cfg)
{
    char *first = dump_uncommented(cfg);
    struct nt_config *again = nt_config_parse_string(first, strlen(first), "dump",
                                                     must_not_report, first);
    if (!again)
        abort();
    char *second = dump_uncommented(again);
    if (strcmp(first, second) != 0) {
        fprintf(stderr, "dump changed on reparse:\n%s\n---\n%s\n", first, second);
        abort();
    }
    free(first);
    free(second);
    nt_config_free(again);
}

static void check_matching(const struct nt_config *cfg)
{
    struct sockaddr_in v4 = { .sin_family = AF_INET, .sin_port = htons(8080) };
    struct sockaddr_in6 v6 = { .sin6_family = AF_INET6, .sin6_port = htons(443) };
    struct sockaddr_in6 mapped = { .sin6_family = AF_INET6, .sin6_port = htons(80) };
    struct sockaddr_un path = { .sun_family = AF_UNIX, .sun_path = "/run/app/a.sock" };
    struct sockaddr_un abstract = { .sun_family = AF_UNIX, .sun_path = "\0name" };
    inet_pton(AF_INET, "10.1.2.3", &v4.sin_addr);
    inet_pton(AF_INET6, "2001:db8::1", &v6.sin6_addr);
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &mapped.sin6_addr);
    const struct { const struct sockaddr *sa; socklen_t len; } addrs[] = {
        { NULL, 0 },
        { (const struct sockaddr *)&v4, sizeof v4 },
        { (const struct sockaddr *)&v6, sizeof v6 },
        { (const struct sockaddr *)&mapped, sizeof mapped },
        { (const struct sockaddr *)&path, sizeof path },
        { (const struct sockaddr *)&abstract,
          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 5) },
    };
    const size_t n = sizeof addrs / sizeof *addrs;
    for (size_t i = 0; i < n; i++) {
        struct nt_conn_key key = {
            .dir = (int)(i % 2) + 1, .local = addrs[i].sa, .local_len = addrs[i].len,
            .remote = addrs[n - 1 - i].sa, .remote_len = addrs[n - 1 - i].len,
            .prog = i % 3 ? "legacy-app" : NULL,
        };
        const struct nt_settings *s = nt_config_match(cfg, &key);
        if (!s || s->coalesce_delay < 0)
            abort();
    }
    (void)nt_config_governs(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nt_config *cfg = nt_config_parse_string((const char *)data, size,
                                                   "fuzz", check_diag, NULL);
    if (cfg) {
        check_round_trip(cfg);
        check_matching(cfg);
        nt_config_free(cfg);
    }

    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct nt_config *dflt = nt_config_default();
    if (dflt) {
        nt_config_apply_options(dflt, text, check_diag, NULL);
        check_matching(dflt);
        nt_config_free(dflt);
    }
    nt_ns ns;
    uint64_t bytes;
    if (nt_parse_duration(text, &ns) == 0 && ns < 0)
        abort();
    nt_parse_size(text, &bytes);
    free(text);
    return 0;
}
