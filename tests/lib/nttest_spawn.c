/* nt_spawn and friends: start a program with the library preloaded into
 * it (and only it), and wait for it with a timeout. */
#define _GNU_SOURCE
#include "nttest.h"
#include "nttest_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

const char *nt_lib_path(void)
{
    const char *p = getenv("NTTEST_LIB");
    return p && *p ? p : NT_LIB_PATH;
}

const char *nt_preload_value(void)
{
    static char buf[4096];
#ifdef NT_SANITIZE
    snprintf(buf, sizeof buf, "%s:%s", NT_ASAN_LIB, nt_lib_path());
#else
    snprintf(buf, sizeof buf, "%s", nt_lib_path());
#endif
    return buf;
}

static bool has_key(const char *kv, const char *key, size_t keylen)
{
    return !strncmp(kv, key, keylen) && kv[keylen] == '=';
}

/* Is the key of `kv` set by one of the "K=V" entries in `list`? */
static bool overridden(const char *kv, const char *const *list)
{
    const char *eq = strchr(kv, '=');
    for (; list && eq && *list; list++)
        if (has_key(*list, kv, eq - kv))
            return true;
    return false;
}

/* Strings child_env had to allocate, freed after the fork. */
struct env_owned {
    char *s[2];
    int n;
};

static void env_free(char **env, struct env_owned *own)
{
    for (int i = 0; i < own->n; i++)
        free(own->s[i]);
    free(env);
}

/* The child's environment, built before fork (the child may only make
 * async-signal-safe calls). */
static char **child_env(const struct nt_spawn_opts *o, struct env_owned *own)
{
    size_t n = 0, k = 0;
    char **env;
    for (char **e = environ; *e; e++)
        n++;
    for (const char *const *e = o->env; e && *e; e++)
        n++;
    env = calloc(n + 3, sizeof *env);
    for (char **e = environ; *e; e++) {
        if (!strncmp(*e, "LD_PRELOAD=", 11) || !strncmp(*e, "NETTIMEO_", 9) ||
            overridden(*e, o->env))
            continue;
#ifdef NT_SANITIZE
        if (!strncmp(*e, "ASAN_OPTIONS=", 13))
            continue;
#endif
        env[k++] = *e;
    }
    own->n = 0;
    if (!o->no_preload && !overridden("LD_PRELOAD=", o->env) &&
        asprintf(&env[k], "LD_PRELOAD=%s", nt_preload_value()) > 0)
        own->s[own->n++] = env[k++];
#ifdef NT_SANITIZE
    /* Leak checking a third-party program is not our business. */
    if (!overridden("ASAN_OPTIONS=", o->env)) {
        const char *old = getenv("ASAN_OPTIONS");
        if (asprintf(&env[k], "ASAN_OPTIONS=%s%sdetect_leaks=0", old ? old : "",
                     old && *old ? ":" : "") > 0)
            own->s[own->n++] = env[k++];
    }
#endif
    for (const char *const *e = o->env; e && *e; e++)
        env[k++] = (char *)*e;
    env[k] = NULL;
    return env;
}

/* argv[0] resolved through PATH in the parent (execvpe may allocate). */
static char *resolve(const char *prog)
{
    const char *path = getenv("PATH");
    char *dirs, *save, *dir, *full;
    if (strchr(prog, '/') || !path)
        return strdup(prog);
    dirs = strdup(path);
    for (dir = strtok_r(dirs, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        if (asprintf(&full, "%s/%s", *dir ? dir : ".", prog) < 0)
            break;
        if (access(full, X_OK) == 0) {
            free(dirs);
            return full;
        }
        free(full);
    }
    free(dirs);
    return strdup(prog);
}

/* An fd for one of the child's standard streams: the caller's fd, a file
 * it named, or -1 for "inherit". *owned says whether we must close it. */
static int stream_fd(int fd, const char *path, int flags, bool *owned)
{
    *owned = false;
    if (fd > 0)
        return fd;
    if (!path)
        return -1;
    *owned = true;
    return open(path, flags | O_CLOEXEC, 0644);
}

static int data_fd(const char *data)
{
    int fd = memfd_create("nt_stdin", MFD_CLOEXEC);
    size_t len = strlen(data);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

pid_t nt_spawn(const char *const argv[], const struct nt_spawn_opts *opts)
{
    static const struct nt_spawn_opts none;
    const struct nt_spawn_opts *o = opts ? opts : &none;
    bool own[3];
    int fds[3], err;
    pid_t parent = getpid(), pid;
    sigset_t mask;
    struct env_owned own_env;
    char **env = child_env(o, &own_env);
    char *path = resolve(argv[0]);

    fds[0] = o->stdin_data ? (own[0] = true, data_fd(o->stdin_data))
                           : stream_fd(o->in_fd, o->in_path, O_RDONLY, &own[0]);
    fds[1] = stream_fd(o->out_fd, o->out_path, O_WRONLY | O_CREAT | O_TRUNC, &own[1]);
    fds[2] = stream_fd(o->err_fd, o->err_path, O_WRONLY | O_CREAT | O_TRUNC, &own[2]);
    pid = fork();
    if (pid == 0) {
        /* Own process group: nt_kill reaches grandchildren. Die with the
         * test, and do not start at all if it is already gone. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        for (int i = 0; i < 3; i++)
            if (fds[i] >= 0 && dup2(fds[i], i) < 0)
                _exit(127);
        close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        for (size_t i = 0; i < o->npass_fds; i++)
            fcntl(o->pass_fds[i], F_SETFD, 0);
        if (o->cwd && chdir(o->cwd) < 0)
            _exit(127);
        /* A test may ignore SIGPIPE or block signals; programs must not
         * inherit that. */
        signal(SIGPIPE, SIG_DFL);
        sigemptyset(&mask);
        sigprocmask(SIG_SETMASK, &mask, NULL);
        execve(path, (char *const *)argv, env);
        _exit(127);
    }
    err = errno;
    for (int i = 0; i < 3; i++)
        if (own[i] && fds[i] >= 0)
            close(fds[i]);
    free(path);
    env_free(env, &own_env);
    errno = err;
    return pid;
}

int nt_wait_quietly(pid_t pid, int timeout_ms, int *status)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0), rc = 1;
    int64_t deadline = nt_now_ms() + timeout_ms;
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid) {
            rc = 0;
            break;
        }
        if (w < 0 && errno != EINTR) {
            rc = -1;
            break;
        }
        int64_t left = timeout_ms < 0 ? 1000 : deadline - nt_now_ms();
        if (left <= 0)
            break;
        if (pfd >= 0) {
            struct pollfd p = {pfd, POLLIN, 0};
            poll(&p, 1, (int)left);
        } else {
            nt_sleep_ms(left < 5 ? (int)left : 5);
        }
    }
    if (pfd >= 0)
        close(pfd);
    return rc;
}

void nt_kill(pid_t pid)
{
    int st;
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
}

int nt_wait_timeout(pid_t pid, int timeout_ms, int *status)
{
    int rc = nt_wait_quietly(pid, timeout_ms, status);
    if (rc == 1) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, status, 0) < 0 && errno == EINTR)
            ;
    }
    return rc;
}

const char *nt_status_str(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d (SIG%s)%s", WTERMSIG(status),
                 sigabbrev_np(WTERMSIG(status)) ?: "?", WCOREDUMP(status) ? " core" : "");
    else
        snprintf(buf, len, "status 0x%x", status);
    return buf;
}
