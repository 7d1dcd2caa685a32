/* Symbolising user stacks captured by BPF (see ksym.c). */
#ifndef NTK_KSYM_H
#define NTK_KSYM_H

#include <stdint.h>

struct ksym_frame {
    const char *symbol;   /* NULL: unknown */
    uint64_t sym_off;
    const char *module;   /* path, "??" if unknown */
    uint64_t module_off;  /* ip minus the module's load bias */
};

/* exe: the program `run` started (fallback once its process is gone). */
void ksym_init(const char *exe);
/* Resolve ip in process pid; returns 1 if its module is known. */
int ksym_resolve(int pid, uint64_t ip, struct ksym_frame *out);
/* Drop the cached maps of pid (it exec'd or exited). */
void ksym_forget(int pid);

#endif
