/* Lazy, once-only initialisation, from whichever hook runs first: a hook
 * may run before this library's constructor (C++ static initialisers,
 * other preloads) and from any thread. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "audit/event.h"
#include "core/nt.h"
#include "core/process.h"
#include "core/real.h"
#include "core/sandbox.h"
#include "core/settings.h"

struct nt_state nt_g;
NT_TLS int nt_in_lib;

/* 0: not started, else the tid doing it; ready is published after. */
static pid_t init_owner;

static void read_program_name(void)
{
    extern char *program_invocation_short_name;
    const char *n = program_invocation_short_name;
    if (!n || !*n)
        n = "?";
    size_t len = strlen(n);
    if (len >= sizeof nt_g.prog)
        len = sizeof nt_g.prog - 1;
    memcpy(nt_g.prog, n, len);
    nt_g.prog[len] = 0;
}

static int env_is_true(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

void nt_init_slow(void)
{
    pid_t self = (pid_t)syscall(SYS_gettid);
    pid_t expected = 0;
    if (!__atomic_compare_exchange_n(&init_owner, &expected, self, 0,
                                      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        if (expected == self)
            return; /* re-entered from our own init (dlsym, malloc, ...) */
        while (!__atomic_load_n(&nt_g.ready, __ATOMIC_ACQUIRE))
            sched_yield();
        return;
    }
    int saved = errno;
    nt_in_lib++;
    nt_real_resolve();
    nt_g.secure = getauxval(AT_SECURE) != 0;
    read_program_name();
    if (env_is_true("NETTIMEO_DISABLE") || nt_sandbox_init() /* sandbox: */)
        nt_g.disabled = 1;
    else
        nt_settings_load_initial();
    nt_process_init();
    nt_in_lib--;
    __atomic_store_n(&nt_g.ready, 1, __ATOMIC_RELEASE);
    errno = saved;
}

/* Initialise early when the loader runs constructors, so the first hooked
 * call does not pay for config parsing; hooks still cope if they run
 * before this. */
__attribute__((constructor)) static void nt_constructor(void)
{
    nt_init();
}
