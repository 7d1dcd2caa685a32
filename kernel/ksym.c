/* User-stack symbolisation for kernel-mode events: addresses from
 * bpf_get_stack(BPF_F_USER_STACK) to "symbol+0xoff (module+0xoff)".
 *
 * Modules come from /proc/PID/maps (read when the event is handled; a
 * process that already exited falls back to the program `run` started,
 * which for a static non-PIE Go binary needs no maps at all). Names come
 * from the ELF symbol table (.symtab, else .dynsym); `module+0xoff` is
 * always given so a stripped binary resolves offline with addr2line. */
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ksym.h"

struct sym {
    uint64_t addr, size;
    char *name;
};

struct elfmod {
    char *path;
    int is_exec;            /* ET_EXEC: addresses are absolute */
    struct sym *syms;
    size_t n;
    uint64_t lo, hi;        /* ET_EXEC: span of the executable PT_LOADs */
};

struct map {
    uint64_t start, end, off;
    struct elfmod *mod;
};

struct proc {
    int pid;
    struct map *maps;
    size_t n;
};

#define NMODS 32
#define NPROCS 16
static struct elfmod *mods[NMODS];
static size_t n_mods;
static struct proc procs[NPROCS];
static size_t next_proc;
static char *fallback_exe;

static int sym_cmp(const void *a, const void *b)
{
    const struct sym *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void load_syms(struct elfmod *m, Elf *e, Elf_Scn *scn, GElf_Shdr *sh)
{
    Elf_Data *d = elf_getdata(scn, NULL);
    if (!d || !sh->sh_entsize)
        return;
    size_t cnt = sh->sh_size / sh->sh_entsize;
    struct sym *v = calloc(cnt ? cnt : 1, sizeof *v);
    if (!v)
        return;
    size_t n = 0;
    for (size_t i = 0; i < cnt; i++) {
        GElf_Sym s;
        if (!gelf_getsym(d, (int)i, &s) || GELF_ST_TYPE(s.st_info) != STT_FUNC ||
            !s.st_value)
            continue;
        const char *nm = elf_strptr(e, sh->sh_link, s.st_name);
        if (!nm || !*nm)
            continue;
        v[n].addr = s.st_value;
        v[n].size = s.st_size;
        v[n].name = strdup(nm);
        if (v[n].name)
            n++;
    }
    qsort(v, n, sizeof *v, sym_cmp);
    m->syms = v;
    m->n = n;
}

static struct elfmod *mod_get(const char *path)
{
    for (size_t i = 0; i < n_mods; i++)
        if (strcmp(mods[i]->path, path) == 0)
            return mods[i];
    if (n_mods == NMODS)
        return NULL;
    struct elfmod *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->path = strdup(path);
    mods[n_mods++] = m;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return m;
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    GElf_Ehdr eh;
    if (e && gelf_getehdr(e, &eh)) {
        m->is_exec = eh.e_type == ET_EXEC;
        size_t nph = 0;
        elf_getphdrnum(e, &nph);
        for (size_t i = 0; i < nph; i++) {
            GElf_Phdr ph;
            if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD ||
                !(ph.p_flags & PF_X))
                continue;
            if (!m->lo || ph.p_vaddr < m->lo)
                m->lo = ph.p_vaddr;
            if (ph.p_vaddr + ph.p_memsz > m->hi)
                m->hi = ph.p_vaddr + ph.p_memsz;
        }
        Elf_Scn *scn = NULL, *dyn = NULL;
        GElf_Shdr dsh;
        while ((scn = elf_nextscn(e, scn))) {
            GElf_Shdr sh;
            if (!gelf_getshdr(scn, &sh))
                continue;
            if (sh.sh_type == SHT_SYMTAB) {
                load_syms(m, e, scn, &sh);
                break;
            }
            if (sh.sh_type == SHT_DYNSYM) {
                dyn = scn;
                dsh = sh;
            }
        }
        if (!m->n && dyn)
            load_syms(m, e, dyn, &dsh);
    }
    if (e)
        elf_end(e);
    close(fd);
    return m;
}

static struct proc *proc_load(int pid)
{
    for (size_t i = 0; i < NPROCS; i++)
        if (procs[i].pid == pid && procs[i].maps)
            return &procs[i];
    char fn[64];
    snprintf(fn, sizeof fn, "/proc/%d/maps", pid);
    FILE *f = fopen(fn, "re");
    if (!f)
        return NULL;
    struct proc *p = &procs[next_proc++ % NPROCS];
    free(p->maps);
    p->maps = NULL;
    p->n = 0;
    p->pid = pid;
    size_t cap = 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        unsigned long long s, e, off;
        char perm[8], path[4000] = "";
        if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %3999[^\n]", &s, &e, perm,
                   &off, path) < 4 || perm[2] != 'x' || path[0] != '/')
            continue;
        if (p->n == cap) {
            cap = cap ? cap * 2 : 16;
            struct map *nm = realloc(p->maps, cap * sizeof *nm);
            if (!nm)
                break;
            p->maps = nm;
        }
        p->maps[p->n++] = (struct map){ s, e, off, mod_get(path) };
    }
    fclose(f);
    if (!p->maps)
        p->maps = calloc(1, sizeof *p->maps); /* remembered as empty */
    return p;
}

void ksym_init(const char *exe)
{
    elf_version(EV_CURRENT);
    free(fallback_exe);
    fallback_exe = exe ? strdup(exe) : NULL;
}

void ksym_forget(int pid)
{
    for (size_t i = 0; i < NPROCS; i++)
        if (procs[i].pid == pid) {
            free(procs[i].maps);
            procs[i].maps = NULL;
            procs[i].pid = 0;
        }
}

static const struct sym *lookup(const struct elfmod *m, uint64_t a)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->syms[mid].addr <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo)
        return NULL;
    const struct sym *s = &m->syms[lo - 1];
    if (s->size && a >= s->addr + s->size)
        return NULL;
    return s;
}

int ksym_resolve(int pid, uint64_t ip, struct ksym_frame *out)
{
    struct proc *p = pid > 0 ? proc_load(pid) : NULL;
    const struct elfmod *m = NULL;
    uint64_t bias = 0;
    for (size_t i = 0; p && i < p->n; i++) {
        const struct map *mp = &p->maps[i];
        if (ip >= mp->start && ip < mp->end && mp->mod) {
            m = mp->mod;
            bias = m->is_exec ? 0 : mp->start - mp->off;
            break;
        }
    }
    if (!m && fallback_exe) {
        const struct elfmod *fm = mod_get(fallback_exe);
        if (fm && fm->is_exec && ip >= fm->lo && ip < fm->hi)
            m = fm;
    }
    out->module = m ? m->path : "??";
    out->module_off = ip - bias;
    out->symbol = NULL;
    out->sym_off = 0;
    if (m) {
        const struct sym *s = lookup(m, ip - bias);
        if (s) {
            out->symbol = s->name;
            out->sym_off = ip - bias - s->addr;
        }
    }
    return m != NULL;
}
