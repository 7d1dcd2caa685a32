/* Common definitions for the nettimeo shim. Everything here is internal:
 * the library is built with -fvisibility=hidden and exports only the
 * interposed functions, marked NT_EXPORT. */
#ifndef NT_H
#define NT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "nt_config.h"

#define NT_EXPORT __attribute__((visibility("default")))
#define NT_TLS __thread __attribute__((tls_model("initial-exec")))
/* For the small per-call functions whose only stack objects are fixed
 * structs passed by address (no arrays, no indexing): a canary there
 * guards nothing and costs a dozen instructions per call. */
#define NT_NO_CANARY __attribute__((no_stack_protector))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
/* The program's call site: the return address of the outermost hook. */
#define NT_CALLER() __builtin_return_address(0)

/* Monotonic time in nanoseconds (vDSO, no syscall). */
static inline nt_ns nt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (nt_ns)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The same clock at tick resolution (a few ms), cheaper: for the clocks
 * the fast path restarts on every call (last activity, request start). */
static inline nt_ns nt_now_coarse(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (nt_ns)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Double an mmap'ed array of `elem`-byte items (`first` items the first
 * time), without malloc; 0, or -1 leaving it as it was. */
int nt_mmap_grow(void **base, size_t *cap, size_t elem, size_t first);

/* Process-wide state, set up once by nt_init(). */
struct nt_state {
    /* `ready` and coalescing's count of connections holding bytes
     * (coalesce.h: nt_coalesce_pending) share one 8-byte word: the hooks'
     * pass-through tests both with one load (nt_fd_passes_clean). */
    union {
        struct {
            int ready;               /* init finished */
            unsigned co_pending;
        };
        uint64_t ready_word;
    };
    int disabled;                    /* NETTIMEO_DISABLE=1 or init failed */
    int governs;                     /* config sets any deadline/coalescing */
    const struct nt_config *config;  /* current config; old ones are kept */
    const struct nt_global *global;
    char prog[64];                   /* basename of the program */
    int secure;                      /* AT_SECURE: ignore env that names files */
};
extern struct nt_state nt_g;
/* ready_word when init has finished and nothing is held */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NT_READY_CLEAN 1ull
#else
#define NT_READY_CLEAN (1ull << 32)
#endif

/* Per-thread re-entry guard: nonzero while the library itself is running,
 * so its own libc calls (syslog, unwinding, config reading) that land in a
 * hook go straight to the real function. */
extern NT_TLS int nt_in_lib;
/* Also in nt_in_lib: this thread called vfork() (core/process.c). */
#define NT_IN_VFORK 0x40000000

void nt_init_slow(void);
/* Lazy, once-only initialisation from whichever hook runs first. */
static inline void nt_init(void)
{
    if (unlikely(!__atomic_load_n(&nt_g.ready, __ATOMIC_ACQUIRE)))
        nt_init_slow();
}

/* Save errno around library work on paths where the program's call
 * succeeded. */
#define NT_KEEP_ERRNO(stmt) do { int nt_e_ = errno; stmt; errno = nt_e_; } while (0)

#endif
