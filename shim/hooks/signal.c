/* sigaction: which signal interrupted a wait of ours?
 *
 * The kernel restarts a blocking call interrupted by a handler installed
 * with SA_RESTART, and fails it with EINTR otherwise, judging by the
 * signal that arrived. The library's own wait (ppoll) is never restarted
 * by the kernel, so it must make that judgement itself. A handler the
 * program installs with sigaction() is entered through a small trampoline
 * that notes, for this thread, whether its signal has SA_RESTART, then
 * calls the program's handler with the same arguments; the kernel sees
 * the program's flags and mask (SA_SIGINFO added), and sigaction() tells
 * the program what it set. Handlers installed by other means (signal(),
 * a raw system call) are not seen: for them the wait falls back to "any
 * installed handler without SA_RESTART means EINTR" (core/io.c).
 *
 * No lock and no allocation: a fixed table indexed by signal number,
 * updated with the signal blocked in this thread. */
#include <signal.h>
#include <string.h>

#include "core/conn.h"
#include "core/real.h"
#include "core/signals.h"

static struct sigaction prog[NSIG];  /* what the program installed */
static unsigned char wrapped[NSIG];  /* the kernel runs nt_trampoline */

NT_TLS int nt_signal_seen;

static void trampoline(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *a = &prog[sig];
    int flags = a->sa_flags;
    void (*handler)(int) = a->sa_handler;
    void (*action)(int, siginfo_t *, void *) = a->sa_sigaction;
    int seen = flags & SA_RESTART ? NT_SIG_RESTART : NT_SIG_EINTR;
    nt_signal_seen = seen;
    if (flags & SA_RESETHAND)
        wrapped[sig] = 0; /* the kernel has put SIG_DFL back */
    if (flags & SA_SIGINFO)
        action(sig, si, uc);
    else if (handler != SIG_IGN && handler != SIG_DFL)
        handler(sig);
    /* again: socket calls inside the handler start afresh (core/io.c) */
    nt_signal_seen = seen;
}

/* What glibc would report for the program's own handler: the kernel's
 * entry (flags glibc adds, such as SA_RESTORER, included) with the
 * program's handler and its SA_SIGINFO. */
static void as_program_sees(struct sigaction *k, const struct sigaction *p)
{
    k->sa_sigaction = p->sa_sigaction; /* the union: sa_handler too */
    k->sa_flags = (k->sa_flags & ~SA_SIGINFO) | (p->sa_flags & SA_SIGINFO);
}

static int has_handler(const struct sigaction *a)
{
    return (a->sa_flags & SA_SIGINFO) ||
           (a->sa_handler != SIG_DFL && a->sa_handler != SIG_IGN);
}

NT_EXPORT int sigaction(int sig, const struct sigaction *act,
                        struct sigaction *old)
{
    /* Never the call that initialises the library: a sanitizer runtime
     * preloaded first sets up its signals from inside its own init, where
     * nothing may call back into it. Until then handlers are not wrapped. */
    if (!__atomic_load_n(&nt_g.ready, __ATOMIC_ACQUIRE) || sig <= 0 ||
        sig >= NSIG || nt_bypass() || nt_g.disabled)
        return real.sigaction(sig, act, old);
    if (unlikely(nt_sandboxed())) { /* sandbox: the program's own call */
        if (act)
            wrapped[sig] = 0;
        return real.sigaction(sig, act, old);
    }
    struct sigaction kernel_old;
    if (!act) {
        int r = real.sigaction(sig, NULL, old ? &kernel_old : NULL);
        if (r == 0 && old) {
            if (wrapped[sig] && kernel_old.sa_sigaction == trampoline)
                as_program_sees(&kernel_old, &prog[sig]);
            *old = kernel_old;
        }
        return r;
    }
    /* The table entry changes with the signal blocked in this thread, so
     * the trampoline never runs here on a half-written entry. */
    sigset_t one, saved;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_BLOCK, &one, &saved);
    struct sigaction was = prog[sig];
    int was_wrapped = wrapped[sig];
    int r;
    if (has_handler(act)) {
        struct sigaction k = *act;
        k.sa_sigaction = trampoline;
        k.sa_flags |= SA_SIGINFO;
        prog[sig] = *act;
        wrapped[sig] = 1;
        r = real.sigaction(sig, &k, &kernel_old);
        if (r != 0) {
            prog[sig] = was;
            wrapped[sig] = (unsigned char)was_wrapped;
        }
    } else {
        r = real.sigaction(sig, act, &kernel_old);
        if (r == 0)
            wrapped[sig] = 0;
    }
    int e = errno;
    if (r == 0 && old) {
        if (was_wrapped && kernel_old.sa_sigaction == trampoline)
            as_program_sees(&kernel_old, &was);
        *old = kernel_old;
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    errno = e;
    return r;
}

int nt_signal_action(int sig, struct sigaction *a)
{
    int r = real.sigaction(sig, NULL, a);
    if (r == 0 && sig > 0 && sig < NSIG && wrapped[sig] &&
        a->sa_sigaction == trampoline)
        as_program_sees(a, &prog[sig]);
    return r;
}
