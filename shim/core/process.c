/* fork, the exec family, posix_spawn and exit. Before a process is
 * duplicated, replaced or ended, whatever the library holds for it is
 * flushed; with `inherit = no` the library removes itself from the
 * environment of exec'd programs. No allocation here: a vfork child may
 * call exec. */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coalesce/coalesce.h"
#include "audit/event.h"
#include "core/conn.h"
#include "core/libc_threads.h"
#include "core/process.h"
#include "core/real.h"
#include "core/sandbox.h"
#include "deadline/timer.h"

uint32_t nt_fork_epoch;
pid_t nt_pid;
extern char **environ;

void nt_process_flush(void)
{
    if (!nt_g.ready || nt_g.disabled || nt_bypass() ||
        nt_sandboxed() /* sandbox: */)
        return;
    nt_in_lib++;
    nt_coalesce_flush_all();
    nt_event_flush_suppressed();
    nt_in_lib--;
}

/* ---- fork ----------------------------------------------------------------
 * One handler for the whole library. prepare flushes what the program
 * wrote (no lock held), then takes the locks of what the child keeps, in
 * the documented order (deadline/timer.h): the coalescing pending set and
 * buffer pool. The timer's lock is not taken: the child keeps nothing of
 * the timer, and re-initialises its lock. A fork child starts with an
 * empty timer and every inherited
 * connection dormant: it governs one from its own first call on it
 * (conn.h), so it never cuts its parent's connections. */

#ifdef NT_SANITIZER_BUILD
/* gcc 12's ASan allocator keeps its locks across fork: a fork child of a
 * parent whose other threads were allocating hangs in the first allocation
 * of a new thread. The sanitizer build therefore starts no timer thread in
 * a child of a multi-threaded parent (deadline/timer.c); release builds,
 * on glibc's malloc, are not affected. */
int nt_fork_parent_threads;

static int count_threads(void)
{
    char buf[2048];
    int fd = (int)syscall(SYS_open, "/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = syscall(SYS_read, fd, buf, sizeof buf - 1);
    syscall(SYS_close, fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    const char *t = strstr(buf, "\nThreads:");
    return t ? atoi(t + 9) : 0;
}
#endif

static void atfork_prepare(void)
{
#ifdef NT_SANITIZER_BUILD
    nt_fork_parent_threads = count_threads();
#endif
    /* fork() flushed already; this catches forks glibc makes internally
     * (daemon()), whose parent then leaves with _exit */
    nt_coalesce_flush_all();
    nt_coalesce_atfork_prepare();
}

static void atfork_parent(void)
{
    nt_coalesce_atfork_parent();
}

static void make_dormant(struct nt_conn *c, void *arg)
{
    c->dormant = 1;
    c->heap_idx = 0;
    c->waiters = 0;
    c->in_call[0] = c->in_call[1] = 0;
}

static void atfork_child(void)
{
    __atomic_add_fetch(&nt_fork_epoch, 1, __ATOMIC_RELAXED);
    nt_pid = (pid_t)syscall(SYS_getpid);
    nt_tid_reset();
    nt_libc_threads_atfork_child();
    nt_coalesce_atfork_child();
    nt_timer_atfork_child();
    nt_event_atfork_child();
    nt_conn_each(make_dormant, NULL);
}

/* ---- vfork ---------------------------------------------------------------
 * A vfork child (Python's subprocess, posix_spawn) shares the parent's
 * memory, thread and TLS until it execs: whatever it does through the
 * library would happen to the parent. vfork() is entered through a
 * frameless trampoline that flushes, marks the calling thread with
 * NT_IN_VFORK and jumps to the real vfork; every hook of the child then
 * bypasses the library (nt_bypass). The parent's first hook after the
 * child let go sees its own pid and clears the mark. */

int nt_bypass_slow(void)
{
    if (nt_in_lib & NT_IN_VFORK) {
        if ((pid_t)syscall(SYS_getpid) != nt_pid)
            return 1; /* the child */
        nt_in_lib &= ~NT_IN_VFORK;
    }
    return nt_in_lib != 0;
}

void nt_vfork_prepare(void);
void *nt_real_vfork;

void nt_vfork_prepare(void)
{
    nt_init();
    NT_KEEP_ERRNO(nt_process_flush());
    nt_in_lib |= NT_IN_VFORK;
}

#if defined(__x86_64__)
/* No frame of ours may be live when vfork returns twice. */
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork,@function\n"
        "vfork:\n"
        "    subq $8, %rsp\n"
        "    call nt_vfork_prepare\n"
        "    addq $8, %rsp\n"
        "    jmp *nt_real_vfork(%rip)\n"
        ".size vfork, .-vfork\n");
#endif

/* ---- inherit = no ----------------------------------------------------------
 * The library takes itself out of LD_PRELOAD once, at start-up, in place:
 * every child, however it is started (exec, posix_spawn, system(),
 * popen(), a raw syscall), then runs without it. The string only gets
 * shorter, so no allocation is needed. */

static const char *own_path(void)
{
    Dl_info info;
    return dladdr((void *)own_path, &info) ? info.dli_fname : NULL;
}

static void strip_own_preload(void)
{
    const char *self = own_path();
    const char *self_base = self ? strrchr(self, '/') : NULL;
    self_base = self_base ? self_base + 1 : self;
    if (!self_base || !environ)
        return;
    size_t blen0 = strlen(self_base);
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "LD_PRELOAD=", 11) != 0)
            continue;
        char *out = *e + 11, *p = out;
        while (*p) {
            size_t len = strcspn(p, ": ");
            const char *base = memrchr(p, '/', len);
            base = base ? base + 1 : p;
            size_t blen = len - (size_t)(base - p);
            int ours = blen == blen0 && memcmp(base, self_base, blen) == 0;
            char *next = p + len + (p[len] != 0);
            if (!ours && len) {
                if (out != *e + 11)
                    *out++ = ':';
                memmove(out, p, len);
                out += len;
            }
            p = next;
        }
        *out = 0;
    }
}

void nt_process_init(void)
{
    nt_pid = (pid_t)syscall(SYS_getpid);
    nt_real_vfork = dlsym(RTLD_NEXT, "vfork");
    nt_libc_threads_init();
    nt_timer_init();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    const struct nt_global *g = nt_g.global;
    if (g && !g->inherit && !nt_g.disabled)
        strip_own_preload();
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

static void before_exec(void)
{
    nt_init();
    nt_process_flush();
}

NT_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    before_exec();
    return real.execve(path, argv, envp);
}

NT_EXPORT int execvpe(const char *file, char *const argv[],
                      char *const envp[])
{
    before_exec();
    return real.execvpe(file, argv, envp);
}

NT_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    before_exec();
    return real.fexecve(fd, argv, envp);
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
    before_exec();
    return real.posix_spawn(pid, path, fa, attr, argv, envp);
}

NT_EXPORT int posix_spawnp(pid_t *pid, const char *file,
                           const posix_spawn_file_actions_t *fa,
                           const posix_spawnattr_t *attr, char *const argv[],
                           char *const envp[])
{
    before_exec();
    return real.posix_spawnp(pid, file, fa, attr, argv, envp);
}
