/* nettimeo-check: validate a config file with the library's own parser.
 *
 *   nettimeo-check [--quiet] [--env] FILE
 *   nettimeo-check --env              (NETTIMEO_OPTIONS alone)
 *
 * Prints every problem as FILE:LINE: message on stderr and exits 1; when the
 * file is good prints "FILE: OK" and the effective configuration, exit 0.
 * Exit 2 on a usage error. */
#include "nt_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct options {
    int quiet, env;
    const char *file;
};

static void usage(FILE *out)
{
    fputs("usage: nettimeo-check [--quiet] [--env] FILE\n"
          "       nettimeo-check --env\n"
          "Checks a nettimeo config file: prints each problem as FILE:LINE: "
          "message\nand exits 1, or prints the effective configuration and "
          "exits 0.\n"
          "  -q, --quiet  print nothing, only set the exit status\n"
          "  -e, --env    also apply NETTIMEO_OPTIONS, as the library does\n"
          "  -h, --help   show this help\n", out);
}

/* 0 to go on, else the exit status to return now. */
static int parse_args(int argc, char **argv, struct options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o->quiet = 1;
        } else if (!strcmp(a, "-e") || !strcmp(a, "--env")) {
            o->env = 1;
        } else if (!strcmp(a, "--") && i + 2 == argc && !o->file) {
            o->file = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "nettimeo-check: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!o->file) {
            o->file = a;
        } else {
            fprintf(stderr, "nettimeo-check: one file at a time\n");
            return 2;
        }
    }
    if (!o->file && !o->env) {
        usage(stderr);
        return 2;
    }
    return 0;
}

static void print_problem(void *ctx, const char *file, int line,
                          const char *msg)
{
    const struct options *o = ctx;
    if (!o->quiet)
        fprintf(stderr, "%s:%d: %s\n", file, line, msg);
}

int main(int argc, char **argv)
{
    struct options o = { 0 };
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? 0 : rc;

    struct nt_config *cfg = o.file ? nt_config_parse_file(o.file, print_problem, &o)
                                   : nt_config_default();
    const char *opts = o.env ? getenv("NETTIMEO_OPTIONS") : NULL;
    if (cfg && opts && nt_config_apply_options(cfg, opts, print_problem, &o) != 0) {
        nt_config_free(cfg);
        cfg = NULL;
    }
    if (!cfg)
        return 1;
    if (!o.quiet) {
        printf("%s: OK\n\n", o.file ? o.file : "NETTIMEO_OPTIONS");
        nt_config_dump(cfg, stdout);
    }
    nt_config_free(cfg);
    return fflush(stdout) == 0 ? 0 : 1;
}
