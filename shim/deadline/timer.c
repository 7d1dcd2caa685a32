/* The timer thread. A binary min-heap of (due, connection, gen), kept in
 * an mmap'ed array (no malloc: arming can happen inside any hook),
 * protected by one mutex. Entries are filed no later than the
 * connection's true due time; the fast path only ever moves due times
 * later, and the thread re-checks the connection when an entry comes due
 * (deadline.c), refiling it if the deadline has moved. See timer.h for
 * the lock order and signal handlers. */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <string.h>

#include "core/libc_threads.h"
#include "core/process.h"
#include "deadline/deadline.h"
#include "deadline/timer.h"
#include "core/sandbox.h"

struct entry {
    nt_ns due;
    struct nt_conn *c;
    uint32_t gen;
};

/* Process-shared: glibc takes a private mutex without an atomic while it
 * believes the process single-threaded, and it is told so while the
 * timer runs (core/libc_threads.c). */
static pthread_mutex_t lock;
static pthread_cond_t wake;
static struct entry *heap; /* heap[1..count]; heap[0] unused */
static size_t count, capacity;
static int running;        /* the thread exists in this process */
static sem_t started;      /* start_thread waits until the thread runs */
static nt_ns sleeping_until; /* the thread's current wake-up time */

/* This thread is taking, holding or letting go of `lock` (from a hook):
 * an arm from a signal handler that interrupted it is queued here and
 * filed when the lock is let go. Set before the lock is taken and
 * cleared after it is let go, so no window is left uncovered. */
#define QUEUE 4
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

static void *timer_main(void *arg);

#ifdef NT_SANITIZER_BUILD
extern int nt_fork_parent_threads; /* core/process.c says why */
#endif

static void start_thread(void)
{
#ifdef NT_SANITIZER_BUILD
    if (nt_fork_epoch && nt_fork_parent_threads > 2)
        return;
#endif
    if (nt_sandboxed()) /* sandbox: a filter may forbid every call the thread makes */
        return;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wake, &ca);
    pthread_condattr_destroy(&ca);
    /* The thread must never take one of the program's signals. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    /* Return only once the thread is fully started: its start-up
     * allocates (thread state, sanitizer bookkeeping), and a fork that
     * caught it there would leave the child's allocator locked. After
     * start-up the thread never allocates, and fork holds its lock. */
    sem_init(&started, 0, 0);
    int single = nt_libc_single();
    pthread_t t;
    if (pthread_create(&t, &attr, timer_main, NULL) == 0) {
        running = 1;
        while (sem_wait(&started) != 0 && errno == EINTR)
            ;
        nt_libc_timer_started(single);
    }
    sem_destroy(&started);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* File under the lock; the caller holds it. */
static void file_locked(struct nt_conn *c, nt_ns due)
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
    if (!running)
        start_thread();
    else if (due < sleeping_until)
        pthread_cond_signal(&wake);
}

static void take(void)
{
    held = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    pthread_mutex_lock(&lock);
}

/* Let go, then file what a signal handler queued meanwhile: one that ran
 * before `held` was cleared queued its arm; one that runs after takes the
 * lock itself. */
static void give(void)
{
    for (;;) {
        pthread_mutex_unlock(&lock);
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
    if (pthread_mutex_trylock(&lock) != 0) {
        held = 0;
        return;
    }
    size_t i = c->heap_idx;
    if (i <= count && owner(&heap[i]) == c)
        remove_at(i);
    c->heap_idx = 0;
    give();
}

static void *timer_main(void *arg)
{
    nt_in_lib = 1; /* anything this thread calls goes straight through */
    sem_post(&started);
    pthread_mutex_lock(&lock);
    for (;;) {
        nt_ns now = nt_now();
        if (!count) {
            sleeping_until = INT64_MAX;
            pthread_cond_wait(&wake, &lock);
            continue;
        }
        if (heap[1].due > now) {
            sleeping_until = heap[1].due;
            struct timespec ts = { .tv_sec = heap[1].due / 1000000000,
                                   .tv_nsec = heap[1].due % 1000000000 };
            pthread_cond_timedwait(&wake, &lock, &ts);
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
        pthread_mutex_unlock(&lock);
        nt_ns next = nt_deadline_due(c, e.gen, now);
        pthread_mutex_lock(&lock);
        if (next && owner(&e))
            file_locked(c, next);
    }
    return arg;
}

int nt_timer_running(void)
{
    return __atomic_load_n(&running, __ATOMIC_RELAXED);
}

unsigned nt_timer_pending(void)
{
    return (unsigned)count;
}

/* The thread did not survive fork, and the child does not inherit its
 * work: every inherited connection is dormant until the child touches it
 * (conn.h), so the heap starts empty and the child starts its own thread
 * when it first arms. */
static void init_lock(void)
{
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&lock, &ma);
    pthread_mutexattr_destroy(&ma);
}

void nt_timer_init(void)
{
    init_lock();
}

void nt_timer_atfork_child(void)
{
    init_lock();
    running = 0;
    sleeping_until = 0;
    count = 0;
    held = 0;
    for (int i = 0; i < QUEUE; i++)
        queued[i] = NULL;
}
