/* See audit_helper.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit_helper.h"

extern char **environ;

static const char *preload_value(void)
{
#ifdef NT_ASAN_LIB
    return NT_ASAN_LIB ":" NT_LIB_PATH;
#else
    return NT_LIB_PATH;
#endif
}

/* The parent's environment without anything that would skew a test. */
static size_t copy_env(char **dst, size_t max, const char *const extra[])
{
    size_t n = 0;
    for (char **e = environ; *e && n < max; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "NETTIMEO_", 9) &&
            strncmp(*e, "ASAN_OPTIONS=", 13))
            dst[n++] = *e;
    for (size_t i = 0; extra && extra[i] && n < max; i++)
        dst[n++] = (char *)extra[i];
    return n;
}

static void redirect(int fd, const char *path)
{
    int f = open(path ? path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f >= 0 && f != fd) {
        dup2(f, fd);
        close(f);
    }
}

pid_t audit_spawn(const char *const argv[], const char *const env[],
                  const char *out_path, const char *err_path)
{
    static char preload[4096];
    char *envp[1024];
    size_t n = copy_env(envp, 1020, env);
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", preload_value());
    envp[n++] = preload;
    envp[n++] = "ASAN_OPTIONS=detect_leaks=0";
    envp[n] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(126);
    redirect(1, out_path);
    redirect(2, err_path);
    signal(SIGPIPE, SIG_DFL);
    execve(argv[0], (char *const *)argv, envp);
    _exit(127);
}

int audit_wait(pid_t pid, int timeout_ms)
{
    int status;
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

int audit_run(const char *const argv[], const char *const env[],
              const char *out_path, const char *err_path, int timeout_ms)
{
    return audit_wait(audit_spawn(argv, env, out_path, err_path), timeout_ms);
}

static char tmpdir[256];

const char *audit_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/nt_audit.XXXXXX");
        if (!mkdtemp(tmpdir))
            abort();
    }
    return tmpdir;
}

void audit_cleanup(void)
{
    if (!tmpdir[0])
        return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    tmpdir[0] = 0;
}

const char *audit_path(const char *name)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 512, "%s/%s", audit_tmpdir(), name);
    return b;
}

const char *audit_config(const char *name, const char *global_body)
{
    const char *path = audit_path(name);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fprintf(f, "[global]\n%s\n", global_body);
    fclose(f);
    return path;
}

char *audit_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        abort();
    while (f) {
        if (len + 4096 > cap && !(buf = realloc(buf, cap *= 2)))
            abort();
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    if (f)
        fclose(f);
    buf[len] = 0;
    return buf;
}

static bool line_is_event(const char *line, const char *event)
{
    if (*line != '{')
        return false;
    if (!event)
        return true;
    char want[64], got[64];
    snprintf(want, sizeof want, "%s", event);
    return audit_get(line, "event", got, sizeof got) && !strcmp(got, want);
}

/* The next line of text that is event `event` (or any, if NULL). */
static const char *next_event(const char *p, const char *event)
{
    while (p && *p) {
        if (line_is_event(p, event))
            return p;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return NULL;
}

static const char *after_line(const char *p)
{
    p = strchr(p, '\n');
    return p ? p + 1 : NULL;
}

const char *audit_nth(const char *text, const char *event, size_t nth)
{
    const char *p = next_event(text, event);
    while (p && nth--)
        p = next_event(after_line(p), event);
    return p;
}

size_t audit_count(const char *text, const char *event)
{
    size_t n = 0;
    for (const char *p = next_event(text, event); p;
         p = next_event(after_line(p), event))
        n++;
    return n;
}

bool audit_get(const char *line, const char *key, char *out, size_t len)
{
    char pat[80];
    size_t end = strcspn(line, "\n");
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = line;
    for (;;) {
        p = strstr(p, pat);
        if (!p || (size_t)(p - line) >= end)
            return false;
        if (p > line && (p[-1] == ',' || p[-1] == '{'))
            break;
        p++;
    }
    p += strlen(pat);
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"' && *p != '\n' && n + 1 < len; p++) {
            if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
                p++;
            out[n++] = *p;
        }
    } else {
        int depth = 0;
        for (; *p && *p != '\n' && n + 1 < len; p++) {
            if (*p == '[' || *p == '{')
                depth++;
            if ((*p == ']' || *p == '}') && depth-- == 0)
                break;
            if (*p == ',' && depth == 0)
                break;
            out[n++] = *p;
        }
    }
    out[n] = 0;
    return true;
}

long long audit_get_num(const char *line, const char *key)
{
    char v[64];
    return audit_get(line, key, v, sizeof v) ? atoll(v) : -1;
}

long audit_validate_jsonl(const char *path)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json,sys\n"
             "n=0\n"
             "for l in open(sys.argv[1],\"rb\"):\n"
             "  o=json.loads(l)\n"
             "  assert isinstance(o,dict) and l.endswith(b\"\\n\")\n"
             "  n+=1\n"
             "print(n)' '%s'", path);
    FILE *p = popen(cmd, "r");
    long n = -1;
    if (!p || fscanf(p, "%ld", &n) != 1)
        n = -1;
    if (p && pclose(p) != 0)
        n = -1;
    return n;
}
