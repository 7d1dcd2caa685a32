/* The timer. A binary min-heap of (due, connection, gen), kept in an
 * mmap'ed array (no malloc: arming can happen inside any hook), protected
 * by one futex lock. Entries are filed no later than the connection's
 * true due time; the fast path only ever moves due times later, and the
 * timer re-checks the connection when an entry comes due (deadline.c),
 * refiling it if the deadline has moved. See timer.h for the lock order,
 * signal handlers and what runs the timer (a raw task, not a pthread). */
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/process.h"
#include "core/real.h"
#include "deadline/deadline.h"
#include "deadline/timer.h"
#include "core/sandbox.h"

struct entry {
    nt_ns due;
    struct nt_conn *c;
    uint32_t gen;
};

static struct entry *heap; /* heap[1..count]; heap[0] unused */
static size_t count, capacity;
static int running;        /* the timer exists in this process */
static nt_ns sleeping_until; /* the timer's current wake-up time */

/* ---- the lock and the wake-up: futex words, no pthread ------------------
 * The timer may be a task glibc does not know (below): glibc then takes
 * its own mutexes without atomics (single-threaded fast paths), so
 * nothing the timer shares with program threads may be a pthread object.
 * lock: 0 free, 1 taken, 2 taken with waiters (Drepper's mutex). */
static uint32_t lock;
static uint32_t wake_seq;  /* bumped to wake the timer */

static inline long raw_syscall6(long n, long a, long b, long c, long d,
                                long e, long f)
{
#if defined(__x86_64__)
    return nt_raw6(n, a, b, c, d, e, f);
#else
    long r = syscall(n, a, b, c, d, e, f);
    return r < 0 ? -errno : r;
#endif
}

/* Raw: errno untouched, and never through the program's syscall() (the
 * library's own hook). */
static inline long futex(uint32_t *w, int op, uint32_t val,
                         const struct timespec *ts, uint32_t bits)
{
    return raw_syscall6(SYS_futex, (long)w, op, val, (long)ts, 0, bits);
}

static void lock_take(void)
{
    uint32_t c = 0;
    if (__atomic_compare_exchange_n(&lock, &c, 1, 0, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED))
        return;
    if (c != 2)
        c = __atomic_exchange_n(&lock, 2, __ATOMIC_ACQUIRE);
    while (c != 0) {
        futex(&lock, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 2, NULL, 0);
        c = __atomic_exchange_n(&lock, 2, __ATOMIC_ACQUIRE);
    }
}

static int lock_try(void)
{
    uint32_t c = 0;
    return __atomic_compare_exchange_n(&lock, &c, 1, 0, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

static void lock_give(void)
{
    if (__atomic_exchange_n(&lock, 0, __ATOMIC_RELEASE) == 2)
        futex(&lock, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, 0);
}

static void wake_timer(void)
{
    __atomic_add_fetch(&wake_seq, 1, __ATOMIC_RELEASE);
    futex(&wake_seq, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, 0);
}

/* Under the lock: let go, sleep until woken or until `until` (CLOCK_MONOTONIC,
 * absolute; INT64_MAX: no limit), take it again. */
static void wait_locked(nt_ns until)
{
    uint32_t seq = __atomic_load_n(&wake_seq, __ATOMIC_ACQUIRE);
    sleeping_until = until;
    lock_give();
    struct timespec ts = { .tv_sec = until / 1000000000,
                           .tv_nsec = until % 1000000000 };
    futex(&wake_seq, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, seq,
          until == INT64_MAX ? NULL : &ts, FUTEX_BITSET_MATCH_ANY);
    lock_take();
}

/* This thread is taking, holding or letting go of `lock` (from a hook):
 * an arm from a signal handler that interrupted it is queued here and
 * filed when the lock is let go. Set before the lock is taken and
 * cleared after it is let go, so no window is left uncovered. */
#define QUEUE 4
NT_TLS int nt_on_timer;
static NT_TLS int held;
static NT_TLS struct nt_conn *queued[QUEUE];
static NT_TLS uint32_t queued_gen[QUEUE];
static NT_TLS nt_ns queued_due[QUEUE];

static int grow(void)
{
    return nt_mmap_grow((void **)&heap, &capacity, sizeof *heap, 4096);
}

/* The connection an entry belongs to, if the entry still describes it. */
static struct nt_conn *owner(const struct entry *e)
{
    return e->c->gen == e->gen ? e->c : NULL;
}

static void place(size_t i, struct entry e)
{
    heap[i] = e;
    struct nt_conn *c = owner(&e);
    if (c) {
        c->heap_idx = (uint32_t)i;
        c->heap_due = e.due;
    }
}

static void sift_up(size_t i, struct entry e)
{
    while (i > 1 && heap[i / 2].due > e.due) {
        place(i, heap[i / 2]);
        i /= 2;
    }
    place(i, e);
}

static void sift_down(size_t i, struct entry e)
{
    for (;;) {
        size_t child = 2 * i;
        if (child > count)
            break;
        if (child < count && heap[child + 1].due < heap[child].due)
            child++;
        if (heap[child].due >= e.due)
            break;
        place(i, heap[child]);
        i = child;
    }
    place(i, e);
}

static void remove_at(size_t i)
{
    struct entry last = heap[count--];
    if (i > count)
        return; /* it was the last one */
    if (i > 1 && heap[i / 2].due > last.due)
        sift_up(i, last);
    else
        sift_down(i, last);
}

/* ---- what runs the timer ------------------------------------------------
 * A pthread makes glibc switch the whole program to its multi-threaded
 * paths for good (locks in malloc and stdio, cancellation around every
 * blocking call): +45 instructions on each of the program's libc calls,
 * governed or not. So the timer is a raw task instead: clone() with the
 * flags of a thread, its own mmap'ed stack, and its own thread control
 * block and static TLS (CLONE_SETTLS), glibc never told. glibc keeps
 * believing the process single-threaded, so the task may only run code
 * that touches no glibc state a program thread could be using unlocked:
 * no malloc, stdio, locale or time zone, dlsym, unwinding, pthread_*.
 * What it runs (nt_deadline_due and below) is plain system-call wrappers
 * and the library's own atomics; the README's "timer task" section has
 * the audit. It is started with every signal blocked (the mask is set in
 * the creator around clone, raw, so glibc's reserved signals are blocked
 * too): the kernel never delivers a program's signal to it. It does not
 * survive fork or exec; set*id calls stop it first and restart it after
 * (nt_timer_suspend), since glibc changes only the calling thread's
 * credentials when it believes it has no other.
 *
 * The sanitizer build keeps a pthread: a task unknown to the sanitizer
 * runtime cannot run instrumented code (no shadow stack, no thread
 * state). So do release builds if the task's TLS cannot be laid out
 * (task_prepare below). */

#ifdef NT_SANITIZER_BUILD
extern int nt_fork_parent_threads; /* core/process.c says why */
#define HAVE_TASK 0
#elif defined(__x86_64__)
#define HAVE_TASK 1
#else
#define HAVE_TASK 0 /* the TCB layout below is x86-64's */
#endif

static void timer_loop(void);
static int stop_req;       /* the timer must return from timer_loop */
static int suspended;      /* set*id calls in progress: start no timer */
static int is_task;        /* the timer is the raw task (not a pthread) */

static void *thread_main(void *arg)
{
    timer_loop();
    return arg;
}

static pthread_t timer_thread;

static int start_pthread(void)
{
    /* The thread must never take one of the program's signals. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    /* Joinable: nt_timer_suspend waits for it to be gone. */
    int ok = pthread_create(&timer_thread, &attr, thread_main, NULL) == 0;
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
}

#if HAVE_TASK
/* The task's memory, one mapping, reused by every start (and in a fork
 * child, which inherits it):
 *
 *   [guard page][stack][static TLS blocks][TCB: struct pthread, zeroed]
 *                                         ^ tp (%fs base), page aligned
 *
 * x86-64 TLS is variant II: the block of a module with static TLS sits at
 * tp - offset, the offset fixed for every thread when the module was
 * loaded. Code compiled initial-exec (libc's errno, this library's
 * NT_TLS, the stack protector's %fs:0x28) reaches exactly that address,
 * so the task gets a private copy of each module's initial image at the
 * same offsets below its own tp. */
#define TASK_STACK (128 * 1024)
#define TASK_TCB (16 * 1024)          /* > sizeof(struct pthread), ~2.3 KiB */
#define TLS_MARGIN (64 * 1024)        /* surplus blocks of later dlopens */
#define TLS_MAX_SPAN (1024 * 1024)    /* a block further away is not static */
#define MAX_MODS 64

struct tls_mod {
    size_t off;            /* tp - block */
    const void *image;
    size_t filesz, memsz;
    size_t modid;
};

static char *task_mem;
static size_t task_mem_size, task_tls_span;
static struct tls_mod mods[MAX_MODS];
static int nmods;
static int task_tid;       /* CLONE_CHILD_CLEARTID: 0 once the task is gone */

static inline char *thread_pointer(void)
{
    char *tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    return tp;
}

struct scan {
    char *tp;
    size_t span;
    int bad;
};

/* A module whose block (in this thread) lies within TLS_MAX_SPAN below tp
 * has static TLS; one elsewhere was allocated on demand (dynamic TLS:
 * only reachable through __tls_get_addr, which nothing the task runs
 * uses, tests/core check the library has no such access). */
static int scan_one(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct scan *s = arg;
    (void)size;
    if (!info->dlpi_tls_modid || !info->dlpi_tls_data)
        return 0;
    const ElfW(Phdr) *tls = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_TLS)
            tls = &info->dlpi_phdr[i];
    if (!tls)
        return 0;
    char *block = info->dlpi_tls_data;
    if (block >= s->tp || (size_t)(s->tp - block) > TLS_MAX_SPAN)
        return 0;
    if (nmods == MAX_MODS) {
        s->bad = 1;
        return 1;
    }
    struct tls_mod *m = &mods[nmods++];
    m->off = (size_t)(s->tp - block);
    m->image = (const void *)(info->dlpi_addr + tls->p_vaddr);
    m->filesz = tls->p_filesz;
    m->memsz = tls->p_memsz;
    m->modid = info->dlpi_tls_modid;
    if (m->memsz > m->off) /* a block runs into the TCB: not variant II */
        s->bad = 1;
    if (m->off > s->span)
        s->span = m->off;
    return 0;
}

/* Is every libc function the task calls (timer.c's audit, README) libc's
 * own or this library's hook? Another preloaded library that wraps one
 * (its wrapper may allocate or lock) gets a pthread timer instead.
 * Checked once per process; the answer cannot change (no dlclose of a
 * preload). */
static int calls_are_libc(void)
{
    static int answer; /* 0 unknown, 1 yes, -1 no */
    if (answer)
        return answer > 0;
    Dl_info libc, ours, f;
    if (!dladdr((void *)__errno_location, &libc) ||
        !dladdr((void *)calls_are_libc, &ours))
        return 0;
    const void *const used[] = {
        (void *)real.close, (void *)real.connect, (void *)real.dup3,
        (void *)real.fcntl, (void *)real.getsockopt, (void *)real.ioctl,
        (void *)real.poll, (void *)real.ppoll, (void *)real.read,
        (void *)real.sendmsg, (void *)real.setsockopt, (void *)real.shutdown,
        (void *)real.sigaction, (void *)real.socket, (void *)real.write,
        (void *)fstat, (void *)stat, (void *)open, (void *)getpeername,
        (void *)getsockopt, (void *)getpid, (void *)getrlimit, (void *)mmap,
        (void *)munmap, (void *)mremap, (void *)nanosleep,
        (void *)sched_yield, (void *)prctl, (void *)sigtimedwait,
        (void *)pthread_sigmask, (void *)clock_gettime, (void *)syscall,
    };
    answer = 1;
    for (size_t i = 0; i < sizeof used / sizeof used[0]; i++)
        if (!used[i] || !dladdr(used[i], &f) ||
            (f.dli_fbase != libc.dli_fbase && f.dli_fbase != ours.dli_fbase))
            answer = -1;
    return answer > 0;
}

/* Lay the task's memory out for the modules loaded now. 0: ready. */
static int task_prepare(void)
{
    if (!calls_are_libc())
        return -1;
    struct scan s = { .tp = thread_pointer() };
    nmods = 0;
    dl_iterate_phdr(scan_one, &s);
    if (s.bad || !nmods)
        return -1;
    /* The two modules whose TLS the task uses (this library's, libc's
     * errno) must be among those laid out, or their initial-exec
     * accesses would land below the area: then a pthread it is. */
    const char *ours = (const char *)&nt_in_lib;
    const char *libc = (const char *)__errno_location();
    if (ours >= s.tp || ours < s.tp - s.span || libc >= s.tp ||
        libc < s.tp - s.span)
        return -1;
    size_t span = (s.span + TLS_MARGIN + 4095) & ~(size_t)4095;
    size_t size = 4096 + TASK_STACK + span + TASK_TCB;
    if (task_mem && task_mem_size < size) {
        munmap(task_mem, task_mem_size);
        task_mem = NULL;
    }
    if (!task_mem) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (p == MAP_FAILED)
            return -1;
        mprotect(p, 4096, PROT_NONE); /* a stack overflow faults */
        task_mem = p;
        task_mem_size = size;
    }
    task_tls_span = span;
    return 0;
}

/* glibc's tcbhead_t (x86-64): the fields read through %fs. */
struct tcb_head {
    void *tcb;             /* 0x00: tp itself */
    void *dtv;             /* 0x08 */
    void *self;            /* 0x10: THREAD_SELF */
    int multiple_threads;  /* 0x18: glibc's per-thread "not alone" flag */
    int gscope_flag;
    uintptr_t sysinfo;
    uintptr_t stack_guard;   /* 0x28: the stack protector's canary */
    uintptr_t pointer_guard; /* 0x30: PTR_MANGLE */
};
_Static_assert(__builtin_offsetof(struct tcb_head, stack_guard) == 0x28, "tcb");
_Static_assert(__builtin_offsetof(struct tcb_head, pointer_guard) == 0x30, "tcb");

/* glibc's dtv_t: the task gets one naming its own static blocks, so even
 * a general-dynamic access to a static module would land in its own TLS
 * (dtv[0]: generation, dtv[-1]: length). */
union dtv_slot {
    size_t counter;
    struct {
        void *val;
        void *to_free;
    } pointer;
};
#define DTV_SLOTS (MAX_MODS + 2)
static union dtv_slot task_dtv[DTV_SLOTS + 1];

/* Fresh TLS and TCB for a start: nothing left from an earlier task (or,
 * in a fork child, from the parent's). The creator's own TLS is only
 * read (canary, pointer guard, dtv generation). */
static char *task_init_tls(void)
{
    char *tp = task_mem + 4096 + TASK_STACK + task_tls_span;
    memset(tp - task_tls_span, 0, task_tls_span + TASK_TCB);
    for (int i = 0; i < nmods; i++)
        memcpy(tp - mods[i].off, mods[i].image, mods[i].filesz);
    const struct tcb_head *mine = (const struct tcb_head *)thread_pointer();
    struct tcb_head *t = (struct tcb_head *)tp;
    t->tcb = tp;
    t->self = tp;
    /* The task is not alone: glibc code that picks a locked or unlocked
     * atomic, or the cancellation wrapper, by this flag takes the safe
     * way on the task (its struct pthread is zeroed: never cancelled). */
    t->multiple_threads = 1;
    t->stack_guard = mine->stack_guard;
    t->pointer_guard = mine->pointer_guard;
    t->sysinfo = mine->sysinfo;
    memset(task_dtv, 0, sizeof task_dtv);
    union dtv_slot *dtv = task_dtv + 1;
    const union dtv_slot *their = mine->dtv;
    dtv[-1].counter = DTV_SLOTS - 1;
    dtv[0].counter = their ? their[0].counter : 0;
    for (size_t m = 1; m < DTV_SLOTS; m++)
        dtv[m].pointer.val = (void *)-1; /* TLS_DTV_UNALLOCATED */
    for (int i = 0; i < nmods; i++)
        if (mods[i].modid < DTV_SLOTS)
            dtv[mods[i].modid].pointer.val = tp - mods[i].off;
    t->dtv = dtv;
    return tp;
}

static int task_main(void *arg)
{
    timer_loop();
    return (int)(intptr_t)arg; /* clone's wrapper ends the task (SYS_exit) */
}

static int start_task(void)
{
    if (task_prepare() != 0)
        return 0;
    char *tp = task_init_tls();
    /* Every signal blocked across clone, raw (glibc's sigprocmask keeps
     * its reserved ones unblocked): the task starts with this mask and
     * never changes it; the creator gets its own mask back. */
    uint64_t all = ~0ULL, old;
    raw_syscall6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, 8, 0, 0);
    __atomic_store_n(&task_tid, -1, __ATOMIC_RELAXED);
    int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND |
                CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS |
                CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
    int r = clone(task_main, task_mem + 4096 + TASK_STACK, flags, NULL,
                  &task_tid, tp, &task_tid);
    raw_syscall6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, 8, 0, 0);
    if (r < 0) {
        task_tid = 0;
        return 0;
    }
    return 1;
}

/* Wait until the task is gone (the kernel clears task_tid and wakes it
 * when the task has left its stack for good). Not FUTEX_PRIVATE: the
 * kernel's wake-up is a shared one. */
static void task_join(void)
{
    int t;
    while ((t = __atomic_load_n(&task_tid, __ATOMIC_ACQUIRE)) != 0)
        futex((uint32_t *)&task_tid, FUTEX_WAIT, (uint32_t)t, NULL, 0);
}
#endif

/* Under the lock. */
static void start_thread(void)
{
#ifdef NT_SANITIZER_BUILD
    if (nt_fork_epoch && nt_fork_parent_threads > 2)
        return;
#endif
    if (nt_sandboxed()) /* sandbox: a filter may forbid every call the timer makes */
        return;
    if (suspended)
        return; /* nt_timer_resume starts it, with the new credentials */
    if (nt_on_timer)
        return; /* never from the timer itself (it runs while running is set) */
    int saved = errno;
    stop_req = 0;
#if HAVE_TASK
    if (start_task()) {
        running = 1;
        is_task = 1;
        errno = saved;
        return;
    }
#endif
    is_task = 0;
    if (start_pthread())
        running = 1;
    errno = saved;
}
/* File under the lock; the caller holds it. */
static void heap_file(struct nt_conn *c, nt_ns due)
{
    size_t i = c->heap_idx;
    if (i && i <= count && heap[i].c == c && heap[i].gen == c->gen) {
        if (due >= heap[i].due)
            return;
        struct entry e = heap[i];
        e.due = due;
        sift_up(i, e);
    } else {
        if (count + 1 >= capacity && grow() != 0)
            return;
        count++;
        sift_up(count, (struct entry){ .due = due, .c = c, .gen = c->gen });
    }
}

/* The same from a program thread: start the timer, or wake it if it
 * sleeps past the new entry. */
static void file_locked(struct nt_conn *c, nt_ns due)
{
    heap_file(c, due);
    if (!running)
        start_thread();
    else if (due < sleeping_until)
        wake_timer();
}

static void take(void)
{
    held = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    lock_take();
}

/* Let go, then file what a signal handler queued meanwhile: one that ran
 * before `held` was cleared queued its arm; one that runs after takes the
 * lock itself. */
static void give(void)
{
    for (;;) {
        lock_give();
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        held = 0;
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        struct nt_conn *c = NULL;
        uint32_t gen = 0;
        nt_ns due = 0;
        for (int i = 0; i < QUEUE && !c; i++) {
            c = __atomic_exchange_n(&queued[i], NULL, __ATOMIC_ACQ_REL);
            gen = queued_gen[i];
            due = queued_due[i];
        }
        if (!c)
            return;
        take();
        if (c->gen == gen)
            file_locked(c, due);
    }
}

void nt_timer_arm(struct nt_conn *c, nt_ns due)
{
    /* Already filed at or before `due`: nothing to do, and no lock. The
     * fence pairs with the thread's: either it sees our new clocks when it
     * re-checks, or we see its entry is gone and file a new one. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (c->heap_idx && c->heap_due <= due && running)
        return;
    if (held) {
        /* A signal handler on a thread inside take()/give(): queue it
         * (a handler nested deeper than QUEUE loses its arm). */
        for (int i = 0; i < QUEUE; i++) {
            if (!__atomic_load_n(&queued[i], __ATOMIC_ACQUIRE)) {
                queued_gen[i] = c->gen;
                queued_due[i] = due;
                __atomic_store_n(&queued[i], c, __ATOMIC_RELEASE);
                break;
            }
        }
        return;
    }
    int saved = errno;
    take();
    file_locked(c, due);
    give();
    errno = saved;
}

void nt_timer_disarm(struct nt_conn *c)
{
    if (!c->heap_idx || held)
        return; /* stale entries are dropped when they come due */
    held = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (!lock_try()) {
        held = 0;
        return;
    }
    size_t i = c->heap_idx;
    if (i <= count && owner(&heap[i]) == c)
        remove_at(i);
    c->heap_idx = 0;
    give();
}

/* The timer's loop; returns (under no lock) when asked to stop. */
static void timer_loop(void)
{
    nt_in_lib = 1; /* anything the timer calls goes straight through */
    nt_on_timer = 1;
    lock_take();
    for (;;) {
        if (__atomic_load_n(&stop_req, __ATOMIC_ACQUIRE))
            break;
        nt_ns now = nt_now();
        if (!count) {
            wait_locked(INT64_MAX);
            continue;
        }
        if (heap[1].due > now) {
            wait_locked(heap[1].due);
            continue;
        }
        struct entry e = heap[1];
        struct nt_conn *c = owner(&e);
        if (c)
            c->heap_idx = 0;
        remove_at(1);
        if (!c)
            continue; /* retired or reused meanwhile */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        lock_give();
        nt_ns next = nt_deadline_due(c, e.gen, now);
        lock_take();
        if (next && owner(&e))
            heap_file(c, next); /* the loop looks at the heap next */
    }
    sleeping_until = 0;
    lock_give();
}

int nt_timer_running(void)
{
    return __atomic_load_n(&running, __ATOMIC_RELAXED);
}

unsigned nt_timer_pending(void)
{
    return (unsigned)count;
}

/* ---- credentials ---------------------------------------------------------
 * glibc believes the process single-threaded, so its set*id functions
 * change only the calling thread: a task started while root would stay
 * root. The hooks (hooks/setid.c, and syscall(SYS_set*id)) stop the task
 * before the call and start a new one, cloned from the caller's new
 * credentials, after it. No timer is started in between. */
int nt_timer_suspend(void)
{
    if (held || nt_on_timer)
        return 0; /* a handler on a thread inside take()/give() */
    take();
    suspended++;
    int stop = running, task = is_task;
    if (stop) {
        __atomic_store_n(&stop_req, 1, __ATOMIC_RELEASE);
        wake_timer();
    }
    give();
    if (stop) {
        /* It finishes the firing under way (a few non-blocking calls),
         * sees stop_req and returns. A pthread timer is stopped too:
         * syscall(SYS_set*id) changes only the caller, even for glibc. */
#if HAVE_TASK
        if (task)
            task_join();
        else
#endif
            pthread_join(timer_thread, NULL);
        (void)task;
        take();
        running = 0;
        is_task = 0;
        stop_req = 0;
        give();
    }
    return 1;
}

void nt_timer_resume(int token)
{
    if (!token)
        return;
    take();
    if (suspended)
        suspended--;
    if (!suspended && !running && count)
        start_thread();
    give();
}

int nt_timer_is_task(void)
{
    return __atomic_load_n(&running, __ATOMIC_RELAXED) &&
           __atomic_load_n(&is_task, __ATOMIC_RELAXED);
}

/* The timer did not survive fork, and the child does not inherit its
 * work: every inherited connection is dormant until the child touches it
 * (conn.h), so the heap starts empty and the child starts its own timer
 * when it first arms. Its lock may have been held by the timer at the
 * fork: a fresh one. The task's memory is inherited and reused. */
void nt_timer_atfork_child(void)
{
    lock = 0;
    wake_seq = 0;
    running = 0;
    is_task = 0;
    stop_req = 0;
    suspended = 0;
#if HAVE_TASK
    task_tid = 0;
#endif
    sleeping_until = 0;
    count = 0;
    held = 0;
    for (int i = 0; i < QUEUE; i++)
        queued[i] = NULL;
}
