/* fork, the exec family, posix_spawn and exit. Before a process is
 * duplicated, replaced or ended, whatever the library holds for it is
 * flushed; with `inherit = no` the library removes itself from the
 * environment of exec'd programs. No allocation here: a vfork child may
 * call exec. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coalesce/coalesce.h"
#include "audit/event.h"
#include "core/process.h"
#include "core/real.h"
#include "core/sandbox.h"
#include "deadline/timer.h"

uint32_t nt_fork_epoch;
extern char **environ;

void nt_process_flush(void)
{
    if (!nt_g.ready || nt_g.disabled || nt_sandboxed()) /* sandbox: */
        return;
    nt_in_lib++;
    nt_coalesce_flush_all();
    nt_event_flush_suppressed();
    nt_in_lib--;
}

static void atfork_prepare(void)
{
    nt_timer_atfork_prepare();
}

static void atfork_parent(void)
{
    nt_timer_atfork_parent();
}

static void atfork_child(void)
{
    __atomic_add_fetch(&nt_fork_epoch, 1, __ATOMIC_RELAXED);
    nt_tid_reset();
    nt_event_atfork_child();
    nt_timer_atfork_child();
}

void nt_process_init(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

__attribute__((destructor)) static void nt_destructor(void)
{
    nt_process_flush();
}

NT_EXPORT pid_t fork(void)
{
    nt_init();
    NT_KEEP_ERRNO(nt_process_flush()); /* no byte may be sent twice */
    return real.fork();
}

NT_EXPORT void exit(int status)
{
    nt_init();
    nt_process_flush();
    real.exit(status);
    __builtin_unreachable();
}

NT_EXPORT void _exit(int status)
{
    nt_init();
    nt_process_flush();
    real._exit(status);
    __builtin_unreachable();
}

NT_EXPORT void _Exit(int status)
{
    nt_init();
    nt_process_flush();
    real._Exit(status);
    __builtin_unreachable();
}

/* --- inherit = no: LD_PRELOAD without this library -------------------- */

#define NT_MAX_ENV 4096
#define NT_PRELOAD_MAX 4096

struct env_copy {
    char *vars[NT_MAX_ENV + 1];
    char preload[NT_PRELOAD_MAX];
};

static const char *own_path(void)
{
    Dl_info info;
    return dladdr((void *)own_path, &info) ? info.dli_fname : NULL;
}

/* Copy LD_PRELOAD=... leaving out every entry that names this library. */
static void strip_preload(const char *var, char *out, size_t size)
{
    const char *self = own_path();
    const char *self_base = self ? strrchr(self, '/') : NULL;
    self_base = self_base ? self_base + 1 : self;
    size_t n = (size_t)snprintf(out, size, "LD_PRELOAD=");
    const char *p = var + strlen("LD_PRELOAD=");
    while (*p) {
        size_t len = strcspn(p, ": ");
        const char *base = memrchr(p, '/', len);
        base = base ? base + 1 : p;
        size_t blen = len - (size_t)(base - p);
        int ours = self_base && blen == strlen(self_base) &&
                   memcmp(base, self_base, blen) == 0;
        if (!ours && len && n + len + 2 < size) {
            if (out[n - 1] != '=')
                out[n++] = ':';
            memcpy(out + n, p, len);
            n += len;
            out[n] = 0;
        }
        p += len;
        p += *p != 0;
    }
}

/* The environment to pass on: unchanged unless inherit = no. */
static char *const *child_env(char *const *envp, struct env_copy *copy)
{
    const struct nt_global *g = nt_g.global;
    if (!envp || !g || g->inherit || nt_g.disabled)
        return envp;
    size_t n = 0;
    for (; envp[n]; n++) {
        if (n == NT_MAX_ENV)
            return envp; /* too large to copy without allocating */
        copy->vars[n] = envp[n];
        if (strncmp(envp[n], "LD_PRELOAD=", 11) == 0) {
            strip_preload(envp[n], copy->preload, sizeof copy->preload);
            copy->vars[n] = copy->preload;
        }
    }
    copy->vars[n] = NULL;
    return copy->vars;
}

static void before_exec(void)
{
    nt_init();
    nt_process_flush();
}

NT_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    struct env_copy copy;
    before_exec();
    return real.execve(path, argv, child_env(envp, &copy));
}

NT_EXPORT int execvpe(const char *file, char *const argv[],
                      char *const envp[])
{
    struct env_copy copy;
    before_exec();
    return real.execvpe(file, argv, child_env(envp, &copy));
}

NT_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    struct env_copy copy;
    before_exec();
    return real.fexecve(fd, argv, child_env(envp, &copy));
}

NT_EXPORT int execv(const char *path, char *const argv[])
{
    return execve(path, argv, environ);
}

NT_EXPORT int execvp(const char *file, char *const argv[])
{
    return execvpe(file, argv, environ);
}

/* execl*: glibc builds argv and calls its internal execve, which no hook
 * sees; collect the arguments and go through the hooks above. */
#define NT_MAX_ARGS 4096
#define COLLECT_ARGS(first, ap, argv)                                          \
    do {                                                                     \
        size_t i_ = 0;                                                       \
        (argv)[i_++] = (char *)(first);                                      \
        while (i_ < NT_MAX_ARGS && ((argv)[i_] = va_arg(ap, char *)) != NULL) \
            i_++;                                                            \
        (argv)[i_] = NULL;                                                   \
    } while (0)

NT_EXPORT int execl(const char *path, const char *arg, ...)
{
    char *argv[NT_MAX_ARGS + 1];
    va_list ap;
    va_start(ap, arg);
    COLLECT_ARGS(arg, ap, argv);
    va_end(ap);
    return execve(path, argv, environ);
}

NT_EXPORT int execlp(const char *file, const char *arg, ...)
{
    char *argv[NT_MAX_ARGS + 1];
    va_list ap;
    va_start(ap, arg);
    COLLECT_ARGS(arg, ap, argv);
    va_end(ap);
    return execvpe(file, argv, environ);
}

NT_EXPORT int execle(const char *path, const char *arg, ...)
{
    char *argv[NT_MAX_ARGS + 1];
    char **envp;
    va_list ap;
    va_start(ap, arg);
    COLLECT_ARGS(arg, ap, argv);
    envp = va_arg(ap, char **);
    va_end(ap);
    return execve(path, argv, envp);
}

NT_EXPORT int posix_spawn(pid_t *pid, const char *path,
                          const posix_spawn_file_actions_t *fa,
                          const posix_spawnattr_t *attr, char *const argv[],
                          char *const envp[])
{
    struct env_copy copy;
    before_exec();
    return real.posix_spawn(pid, path, fa, attr, argv, child_env(envp, &copy));
}

NT_EXPORT int posix_spawnp(pid_t *pid, const char *file,
                           const posix_spawn_file_actions_t *fa,
                           const posix_spawnattr_t *attr, char *const argv[],
                           char *const envp[])
{
    struct env_copy copy;
    before_exec();
    return real.posix_spawnp(pid, file, fa, attr, argv,
                             child_env(envp, &copy));
}
