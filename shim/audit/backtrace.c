/* Backtraces with a lazily loaded libunwind (see backtrace.h). */
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

/* Types and symbol names only: nothing here links against libunwind. */
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "audit/backtrace.h"
#include "audit/event.h"
#include "core/fdtable.h"
#include "core/nt.h"
#include "core/real.h"

#define NT_STR2(x) #x
#define NT_STR(x) NT_STR2(x) /* expands libunwind's macros first */
#define NT_UNWIND_SONAME "libunwind.so.8"
#define NT_MAX_FRAMES 64
#define NT_SYM_MAX 256

/* libunwind's entry points are macros over arch-prefixed names
 * (unw_step -> _ULx86_64_step); NT_STR gives the real symbol. */
static struct {
    int (*getcontext)(unw_context_t *);
    int (*init_local)(unw_cursor_t *, unw_context_t *);
    int (*step)(unw_cursor_t *);
    int (*get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
    int (*get_proc_name)(unw_cursor_t *, char *, size_t, unw_word_t *);
} uw;

enum { UW_UNTRIED, UW_LOADING, UW_READY, UW_MISSING };
static int uw_state;
static void *own_base;             /* where libnettimeo.so is mapped */
static char exe_path[512] = "??";  /* the main program, for its frames */

NT_TLS int nt_unwinding;           /* this thread is inside an unwind */
#define unwinding nt_unwinding

/* ---- libunwind's pipe ----
 * libunwind validates memory by writing a byte of it into a pipe of its
 * own, opened with pipe2() at its first unwind and kept in static
 * variables. A program may close those numbers (closefrom at start-up)
 * and reuse them: libunwind would then read from and write into the
 * program's files. So its pipe goes high (hooks/pipe.c sends the pipe2()
 * of an unwind here), and before each walk the numbers are checked: a pipe
 * closed behind us is made again on the same numbers, and when the
 * program uses them now there is no walk at all. */
static struct { int fd[2]; uint64_t ino[2]; } uw_pipe = { { -1, -1 }, { 0, 0 } };

int nt_backtrace_pipe2(int fds[2], int flags)
{
    int r = real.pipe2(fds, flags | O_CLOEXEC);
    if (r != 0)
        return r;
    for (int i = 0; i < 2; i++) {
        struct stat st;
        fds[i] = nt_fd_move_high(fds[i]);
        uw_pipe.fd[i] = fds[i];
        uw_pipe.ino[i] = fstat(fds[i], &st) == 0 ? (uint64_t)st.st_ino : 0;
    }
    return 0;
}

/* 1: ours, 0: closed, -1: someone else's now. */
static int pipe_end(int i)
{
    struct stat st;
    if (fstat(uw_pipe.fd[i], &st) != 0)
        return errno == EBADF ? 0 : -1;
    return S_ISFIFO(st.st_mode) && (uint64_t)st.st_ino == uw_pipe.ino[i] ? 1 : -1;
}

static int pipe_intact(void)
{
    if (uw_pipe.fd[0] < 0)
        return 1; /* not made yet: the first walk makes it */
    int a = pipe_end(0), b = pipe_end(1);
    if (a == 1 && b == 1)
        return 1;
    if (a < 0 || b < 0)
        return 0; /* the program's now: libunwind must not touch them */
    int p[2];
    if (real.pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        return 0;
    int ok = 1;
    for (int i = 0; i < 2; i++) {
        if (pipe_end(i) == 1)
            real.close(uw_pipe.fd[i]); /* the surviving end of the old pipe */
        struct stat st;
        ok = ok && real.dup3(p[i], uw_pipe.fd[i], O_CLOEXEC) == uw_pipe.fd[i] &&
             fstat(uw_pipe.fd[i], &st) == 0;
        if (ok)
            uw_pipe.ino[i] = (uint64_t)st.st_ino;
        real.close(p[i]);
    }
    return ok;
}

static int resolve_unwind(void *h)
{
    uw.getcontext = (int (*)(unw_context_t *))
        dlsym(h, NT_STR(unw_tdep_getcontext));
    uw.init_local = (int (*)(unw_cursor_t *, unw_context_t *))
        dlsym(h, NT_STR(unw_init_local));
    uw.step = (int (*)(unw_cursor_t *))dlsym(h, NT_STR(unw_step));
    uw.get_reg = (int (*)(unw_cursor_t *, unw_regnum_t, unw_word_t *))
        dlsym(h, NT_STR(unw_get_reg));
    uw.get_proc_name = (int (*)(unw_cursor_t *, char *, size_t, unw_word_t *))
        dlsym(h, NT_STR(unw_get_proc_name));
    return uw.getcontext && uw.init_local && uw.step && uw.get_reg &&
           uw.get_proc_name;
}

static void learn_own_objects(void)
{
    Dl_info self;
    if (dladdr((void *)learn_own_objects, &self))
        own_base = self.dli_fbase;
    ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
    if (n > 0)
        exe_path[n] = 0;
}

/* Once per process. A thread that finds another one loading does not
 * wait: it logs its event with the caller frame only. */
static int unwinder_ready(void)
{
    int st = __atomic_load_n(&uw_state, __ATOMIC_ACQUIRE);
    if (st != UW_UNTRIED)
        return st == UW_READY;
    if (!__atomic_compare_exchange_n(&uw_state, &st, UW_LOADING, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return st == UW_READY;
    nt_in_lib++;
    learn_own_objects();
    void *h = dlopen(NT_UNWIND_SONAME, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    int ok = h && resolve_unwind(h);
    nt_in_lib--;
    __atomic_store_n(&uw_state, ok ? UW_READY : UW_MISSING, __ATOMIC_RELEASE);
    return ok;
}

/* ---- one frame ---- */

struct frame_where {
    const char *module;
    uintptr_t module_off;
    int ours;          /* inside libnettimeo.so */
    const char *dyn_sym;
    uintptr_t dyn_off;
};

static void locate(uintptr_t ip, struct frame_where *w)
{
    Dl_info info;
    struct link_map *map = NULL;
    memset(w, 0, sizeof *w);
    w->module = "??";
    w->module_off = ip;
    if (!dladdr1((void *)ip, &info, (void **)&map, RTLD_DL_LINKMAP))
        return;
    w->ours = own_base && info.dli_fbase == own_base;
    if (map)  /* the main program's link map has an empty name */
        w->module = map->l_name[0] ? map->l_name : exe_path;
    else if (info.dli_fname)
        w->module = info.dli_fname;
    /* The load bias, not dli_fbase: for a non-PIE executable addr2line
     * wants the link-time address itself. */
    w->module_off = ip - (map ? (uintptr_t)map->l_addr
                              : (uintptr_t)info.dli_fbase);
    if (info.dli_sname && info.dli_saddr) {
        w->dyn_sym = info.dli_sname;
        w->dyn_off = ip - (uintptr_t)info.dli_saddr;
    }
}

/* "symbol+0xoff (module+0xoff)" as one array element; rolled back whole
 * if it does not fit. Returns 0 when the buffer is full. */
static int put_frame(struct nt_jbuf *b, const char *sym, uintptr_t sym_off,
                     const struct frame_where *w)
{
    struct nt_jmark m = nt_j_mark(b);
    nt_j_elem(b);
    nt_j_raw(b, "\"", 1);
    if (sym) {
        nt_j_escaped(b, sym, strlen(sym));
        nt_j_raw(b, "+", 1);
        nt_j_hex(b, sym_off);
    } else {
        nt_j_raw(b, "??", 2);
    }
    nt_j_raw(b, " (", 2);
    nt_j_escaped(b, w->module, strlen(w->module));
    nt_j_raw(b, "+", 1);
    nt_j_hex(b, w->module_off);
    nt_j_raw(b, ")\"", 2);
    if (b->overflow) {
        nt_j_rollback(b, m);
        return 0;
    }
    return 1;
}

/* ---- symbol cache ----
 * unw_get_proc_name re-reads /proc/self/maps and maps the object file on
 * every call (~30 us a frame); a flood repeats the same frames, so names
 * are remembered per address. A seqlock per entry: readers never wait,
 * a writer that finds the entry busy just does not cache. */

#define NT_SYMCACHE_SLOTS 512
#define NT_SYMCACHE_NAME 112

struct sym_entry {
    uint32_t seq;       /* odd while being written */
    uintptr_t ip, off;
    char name[NT_SYMCACHE_NAME]; /* "" = no name known */
};
static struct sym_entry symcache[NT_SYMCACHE_SLOTS];

static struct sym_entry *sym_slot(uintptr_t ip)
{
    return &symcache[(ip ^ (ip >> 9)) % NT_SYMCACHE_SLOTS];
}

static int sym_lookup(uintptr_t ip, char *name, uintptr_t *off)
{
    struct sym_entry *e = sym_slot(ip);
    uint32_t seq = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
    if ((seq & 1) || __atomic_load_n(&e->ip, __ATOMIC_RELAXED) != ip)
        return 0;
    memcpy(name, e->name, NT_SYMCACHE_NAME);
    *off = e->off;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(&e->seq, __ATOMIC_RELAXED) == seq;
}

static void sym_store(uintptr_t ip, const char *name, uintptr_t off)
{
    size_t len = strlen(name);
    struct sym_entry *e = sym_slot(ip);
    uint32_t seq = __atomic_load_n(&e->seq, __ATOMIC_RELAXED);
    if (len >= NT_SYMCACHE_NAME || (seq & 1) ||
        !__atomic_compare_exchange_n(&e->seq, &seq, seq + 1, 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return;
    __atomic_store_n(&e->ip, ip, __ATOMIC_RELAXED);
    e->off = off;
    memcpy(e->name, name, len + 1);
    __atomic_store_n(&e->seq, seq + 2, __ATOMIC_RELEASE);
}

/* Name from .symtab through libunwind (cached), else from .dynsym through
 * dladdr. */
static int put_cursor_frame(struct nt_jbuf *b, unw_cursor_t *cur,
                            uintptr_t ip, const struct frame_where *w)
{
    char name[NT_SYM_MAX];
    uintptr_t off = 0;
    if (!sym_lookup(ip, name, &off)) {
        unw_word_t uoff = 0;
        int r = uw.get_proc_name(cur, name, sizeof name, &uoff);
        if (r != 0 && r != -UNW_ENOMEM)
            name[0] = 0;
        name[sizeof name - 1] = 0;
        off = (uintptr_t)uoff;
        sym_store(ip, name, off);
    }
    if (name[0])
        return put_frame(b, name, off, w);
    return put_frame(b, w->dyn_sym, w->dyn_off, w);
}

void nt_backtrace_append_addr(struct nt_jbuf *b, void *ip)
{
    struct frame_where w;
    nt_in_lib++;
    if (!own_base)
        learn_own_objects();
    locate((uintptr_t)ip, &w);
    put_frame(b, w.dyn_sym, w.dyn_off, &w);
    nt_in_lib--;
}

/* ---- the walk ---- */

/* Returns the number of frames appended; 0 if unwinding found none. */
static int walk(struct nt_jbuf *b, int max)
{
    unw_context_t ctx;
    unw_cursor_t cur;
    if (uw.getcontext(&ctx) != 0 || uw.init_local(&cur, &ctx) != 0)
        return 0;
    int n = 0;
    for (int seen = 0; n < max && seen < NT_MAX_FRAMES * 2; seen++) {
        unw_word_t ip;
        if (uw.get_reg(&cur, UNW_REG_IP, &ip) != 0 || ip == 0)
            break;
        struct frame_where w;
        locate((uintptr_t)ip, &w);
        if (!w.ours) {
            if (!put_cursor_frame(b, &cur, (uintptr_t)ip, &w))
                break;
            n++;
        }
        if (uw.step(&cur) <= 0)
            break;
    }
    return n;
}

void nt_backtrace_append(struct nt_jbuf *b, int max, void *caller)
{
    if (!caller || max <= 0)
        return; /* the timer thread: no call site to walk from */
    if (max > NT_MAX_FRAMES)
        max = NT_MAX_FRAMES;
    nt_in_lib++;
    int n = 0;
    if (!unwinding && unwinder_ready() && pipe_intact()) {
        unwinding = 1;
        n = walk(b, max);
        unwinding = 0;
    }
    if (n == 0)
        nt_backtrace_append_addr(b, caller);
    nt_in_lib--;
}

/* Loads libunwind and runs one short walk, so that the first event does
 * not pay for it. Measured: see the report in event.c's header. */
void nt_backtrace_prepare(void)
{
    char buf[512];
    struct nt_jbuf b;
    nt_j_init(&b, buf, sizeof buf);
    nt_in_lib++;
    if (unwinder_ready() && pipe_intact()) {
        unwinding = 1;
        (void)walk(&b, 1);
        unwinding = 0;
    }
    nt_in_lib--;
}

void nt_backtrace_atfork_child(void)
{
    for (unsigned i = 0; i < NT_SYMCACHE_SLOTS; i++)
        if (symcache[i].seq & 1) /* a writer that did not survive fork */
            symcache[i].seq = 0, symcache[i].ip = 0;
    int loading = UW_LOADING;
    __atomic_compare_exchange_n(&uw_state, &loading, UW_UNTRIED, 0,
                                __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    unwinding = 0;
}
