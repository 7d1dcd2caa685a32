/* Children glibc starts where no hook sees them: system(), popen() and
 * wordexp() (command substitution) spawn theirs with glibc's internal
 * posix_spawn, and a vfork child runs
 * in the parent's memory until it execs. Whatever the parent buffered
 * must reach the socket before the child can write to it (LESSONS 24):
 * each of these flushes first (nt_process_flush, as fork and exec do).
 *
 * vfork: the flush must happen in the parent, before the call (the child
 * shares the parent's memory and must not touch the library's state), and
 * vfork cannot be wrapped in C: the child returns into the wrapper's
 * frame, then the parent returns through the same frame again, which the
 * child has overwritten (undefined behaviour; a crash in practice). So
 * the x86_64 hook is a few instructions of assembly: call the flush (its
 * frame is gone when it returns), then jump to the next vfork with the
 * program's return address still on top of the stack, as if the program
 * had called it directly. On other architectures vfork is not
 * interposed: there a vfork child's exec is the first flush point, so the
 * parent's buffered bytes can come after the child's (documented in the
 * README; fork, posix_spawn, system and popen flush everywhere). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <wordexp.h>

#include "core/nt.h"
#include "core/process.h"
#include "core/real.h"

typedef int (*system_fn)(const char *);
typedef FILE *(*popen_fn)(const char *, const char *);
typedef int (*wordexp_fn)(const char *, wordexp_t *, int);

static void *next_fn(void **cache, const char *name)
{
    void *p = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (!p) {
        p = dlsym(RTLD_NEXT, name);
        __atomic_store_n(cache, p, __ATOMIC_RELEASE);
    }
    return p;
}

static void *next_system, *next_popen, *next_wordexp;

static void before_child(void)
{
    nt_init();
    NT_KEEP_ERRNO(nt_process_flush());
}

NT_EXPORT int system(const char *cmd)
{
    before_child();
    system_fn next = (system_fn)next_fn(&next_system, "system");
    if (!next) {
        errno = ENOSYS;
        return -1;
    }
    return next(cmd);
}

NT_EXPORT FILE *popen(const char *cmd, const char *mode)
{
    before_child();
    popen_fn next = (popen_fn)next_fn(&next_popen, "popen");
    if (!next) {
        errno = ENOSYS;
        return NULL;
    }
    return next(cmd, mode);
}

NT_EXPORT int wordexp(const char *words, wordexp_t *we, int flags)
{
    if (!(flags & WRDE_NOCMD)) /* $(...) runs a shell */
        before_child();
    wordexp_fn next = (wordexp_fn)next_fn(&next_wordexp, "wordexp");
    if (!next)
        return WRDE_NOSPACE;
    return next(words, we, flags);
}

#if defined(__x86_64__)
static void *next_vfork;

/* Called by the vfork trampoline below: flush, and say where to go. */
void *nt_vfork_prepare(void);
__attribute__((used, visibility("hidden"))) void *nt_vfork_prepare(void)
{
    before_child();
    void *next = next_fn(&next_vfork, "vfork");
    /* no next vfork (cannot happen with glibc): a fork is a valid vfork */
    return next ? next : (void *)real.fork;
}

/* At entry the program's return address is on top of the stack (rsp is
 * 8 mod 16); the call needs rsp 0 mod 16. After it returns, the stack is
 * exactly as at entry, and the next vfork returns to the program. */
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork, @function\n"
        ".p2align 4\n"
        "vfork:\n"
        ".cfi_startproc\n"
        "endbr64\n"
        "subq $8, %rsp\n"
        ".cfi_adjust_cfa_offset 8\n"
        "call nt_vfork_prepare\n"
        "addq $8, %rsp\n"
        ".cfi_adjust_cfa_offset -8\n"
        "jmp *%rax\n"
        ".cfi_endproc\n"
        ".size vfork, .-vfork\n");
#endif
