/* Loading, reloading and matching the configuration inside the host
 * process. Parsing itself is in config/; this file decides where the file
 * is, what happens when it is bad (fail open, or exit 78 when strict), and
 * when to look at it again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/event.h"
#include "core/real.h"
#include "core/settings.h"

#define NT_EX_CONFIG 78 /* EX_CONFIG from sysexits.h */
#define NT_RELOAD_INTERVAL 1000000000LL

static char config_path[512];   /* "" when running on built-in defaults */
static struct stat config_stat; /* what was loaded, to notice changes */
static nt_ns next_check;
static int reloading;           /* one thread at a time re-reads */

void nt_say(const char *msg)
{
    char line[1200];
    int n = snprintf(line, sizeof line, "nettimeo: %s\n", msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1;
    NT_KEEP_ERRNO((void)!real.write(2, line, (size_t)n));
}

struct diag_sink {
    int errors;
    char first[1024]; /* the first message, for the config_error event */
};

static void report_problem(void *ctx, const char *file, int line,
                           const char *msg)
{
    struct diag_sink *d = ctx;
    char text[1024];
    if (line > 0)
        snprintf(text, sizeof text, "%s:%d: %s", file, line, msg);
    else
        snprintf(text, sizeof text, "%s: %s", file, msg);
    if (d->errors++ == 0)
        memcpy(d->first, text, sizeof text);
    nt_say(text);
}

/* A bad config never takes the program down, unless it asked for that. */
static void fail_open(const struct diag_sink *d, int at_init)
{
    const char *strict = getenv("NETTIMEO_STRICT");
    if (at_init && strict && strcmp(strict, "1") == 0) {
        nt_say("NETTIMEO_STRICT=1: exiting with status 78");
        real._exit(NT_EX_CONFIG);
    }
    char msg[1100];
    snprintf(msg, sizeof msg, "%s%s", d->first,
             at_init ? " (running as a pass-through)"
                     : " (keeping the previous configuration)");
    struct nt_event ev = { .kind = NT_EV_CONFIG_ERROR, .fd = -1,
                           .message = msg };
    nt_event_emit(&ev);
}

static const char *choose_path(void)
{
    const char *env = nt_g.secure ? NULL : getenv("NETTIMEO_CONFIG");
    if (env && *env)
        return env;
    struct stat st;
    if (stat("/etc/nettimeo.conf", &st) == 0)
        return "/etc/nettimeo.conf";
    return NULL;
}

/* Parse file (if any) plus NETTIMEO_OPTIONS; NULL after reporting. */
static struct nt_config *parse_all(struct diag_sink *d, struct stat *st)
{
    struct nt_config *cfg;
    if (config_path[0]) {
        if (stat(config_path, st) != 0)
            memset(st, 0, sizeof *st);
        cfg = nt_config_parse_file(config_path, report_problem, d);
    } else {
        cfg = nt_config_default();
    }
    if (!cfg)
        return NULL;
    const char *opts = getenv("NETTIMEO_OPTIONS");
    if (opts && *opts &&
        nt_config_apply_options(cfg, opts, report_problem, d) != 0) {
        nt_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* NETTIMEO_LOG (set by `nettimeo run --log`) names the sink without a
 * config file. It names a file, so it is ignored under AT_SECURE. The copy
 * is never freed: the event writer keeps pointing at it. */
static const struct nt_global *with_log_override(const struct nt_global *g)
{
    const char *log = nt_g.secure ? NULL : getenv("NETTIMEO_LOG");
    if (!log || !*log)
        return g;
    struct nt_global *copy = malloc(sizeof *copy);
    if (!copy)
        return g;
    *copy = *g;
    snprintf(copy->log, sizeof copy->log, "%s", log);
    return copy;
}

static void publish(struct nt_config *cfg)
{
    nt_event_configure(with_log_override(nt_config_global(cfg)));
    __atomic_store_n(&nt_g.governs, nt_config_governs(cfg), __ATOMIC_RELAXED);
    __atomic_store_n(&nt_g.global, nt_config_global(cfg), __ATOMIC_RELEASE);
    __atomic_store_n(&nt_g.config, cfg, __ATOMIC_RELEASE);
    if (config_path[0]) {
        char msg[600];
        snprintf(msg, sizeof msg, "loaded %s", config_path);
        struct nt_event ev = { .kind = NT_EV_CONFIG_LOADED, .fd = -1,
                               .message = msg };
        nt_event_emit(&ev);
    }
}

void nt_settings_load_initial(void)
{
    const char *p = choose_path();
    if (p)
        snprintf(config_path, sizeof config_path, "%s", p);
    struct diag_sink d = { 0 };
    struct nt_config *cfg = parse_all(&d, &config_stat);
    next_check = nt_now() + NT_RELOAD_INTERVAL;
    if (cfg) {
        publish(cfg);
        return;
    }
    /* Events still go to stderr so the config_error is seen. */
    struct nt_config *dflt = nt_config_default();
    if (dflt)
        nt_event_configure(with_log_override(nt_config_global(dflt)));
    fail_open(&d, 1);
    /* dflt stays allocated: the event writer points into it */
}

static int file_changed(void)
{
    struct stat st;
    if (stat(config_path, &st) != 0)
        return 0; /* removed: keep what we have */
    return st.st_ino != config_stat.st_ino ||
           st.st_mtim.tv_sec != config_stat.st_mtim.tv_sec ||
           st.st_mtim.tv_nsec != config_stat.st_mtim.tv_nsec ||
           st.st_size != config_stat.st_size;
}

static void maybe_reload(void)
{
    if (!config_path[0])
        return;
    nt_ns now = nt_now();
    if (now < __atomic_load_n(&next_check, __ATOMIC_RELAXED))
        return;
    if (__atomic_exchange_n(&reloading, 1, __ATOMIC_ACQUIRE))
        return;
    __atomic_store_n(&next_check, now + NT_RELOAD_INTERVAL, __ATOMIC_RELAXED);
    if (file_changed()) {
        struct diag_sink d = { 0 };
        struct stat st;
        struct nt_config *cfg = parse_all(&d, &st);
        config_stat = st; /* a bad file is reported once, not every second */
        if (cfg)
            publish(cfg); /* the old config stays allocated: connections
                             keep pointing into it */
        else
            fail_open(&d, 0);
    }
    __atomic_store_n(&reloading, 0, __ATOMIC_RELEASE);
}

static int role_dir(int role)
{
    return role == NT_ROLE_OUTBOUND ? NT_DIR_OUTBOUND : NT_DIR_INBOUND;
}

const struct nt_settings *nt_settings_match(const struct nt_conn *c)
{
    nt_in_lib++;
    maybe_reload();
    nt_in_lib--;
    const struct nt_config *cfg = __atomic_load_n(&nt_g.config,
                                                  __ATOMIC_ACQUIRE);
    if (!cfg)
        return NULL;
    union nt_addr local, remote;
    socklen_t llen = nt_conn_addr(c, 0, &local);
    socklen_t rlen = nt_conn_addr(c, 1, &remote);
    struct nt_conn_key key = {
        .dir = role_dir(c->role),
        .local = llen ? &local.sa : NULL,
        .local_len = llen,
        .remote = rlen ? &remote.sa : NULL,
        .remote_len = rlen,
        .prog = nt_g.prog,
    };
    return nt_config_match(cfg, &key);
}
