/* Connection addresses, stored compactly (conn.h: struct nt_caddr).
 * Apart from the library, the kernel-mode loader and the audit unit test
 * link this file: the event formatter reads addresses through it. */
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#include "core/conn.h"

/* IP addresses are stored compactly in the object; a Unix path (or any
 * address that does not fit) goes to a side table parallel to the pool,
 * mmap'ed per chunk the first time one of its objects needs it and never
 * unmapped, like the chunks: programs with only IP sockets never pay for
 * 110-byte paths. */

struct side_addr {
    socklen_t len[2];
    union nt_addr a[2];
};

static struct side_addr *side_chunks[NT_CONN_NCHUNKS];

static struct side_addr *side_of(uint32_t idx, int create)
{
    struct side_addr **slot = &side_chunks[idx >> NT_CONN_CHUNK_SHIFT];
    struct side_addr *ch = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!ch && create) {
        size_t size = (1u << NT_CONN_CHUNK_SHIFT) * sizeof *ch;
        void *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        struct side_addr *expected = NULL;
        if (__atomic_compare_exchange_n(slot, &expected, m, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            ch = m;
        } else {
            munmap(m, size);
            ch = expected;
        }
    }
    return ch ? &ch[idx & ((1u << NT_CONN_CHUNK_SHIFT) - 1)] : NULL;
}

void nt_conn_set_addr(struct nt_conn *c, int remote, const union nt_addr *a,
                      socklen_t len)
{
    struct nt_caddr *d = remote ? &c->remote : &c->local;
    memset(d, 0, sizeof *d);
    if (len < sizeof(sa_family_t))
        return;
    switch (a->sa.sa_family) {
    case AF_INET:
        if (len < sizeof a->in)
            return; /* the formatter would say nothing either */
        memcpy(d->ip, &a->in.sin_addr, 4);
        d->port = a->in.sin_port;
        d->fam = AF_INET;
        return;
    case AF_INET6:
        if (len < sizeof a->in6)
            return;
        memcpy(d->ip, &a->in6.sin6_addr, 16);
        d->port = a->in6.sin6_port;
        d->fam = AF_INET6;
        return;
    case AF_UNIX:
        if (len <= offsetof(struct sockaddr_un, sun_path)) {
            d->fam = AF_UNIX; /* unnamed (socketpair): nothing to keep */
            return;
        }
    }
    struct side_addr *s = side_of(c->idx, 1);
    if (!s)
        return;
    memcpy(&s->a[remote], a, len);
    s->len[remote] = len;
    d->fam = AF_UNIX; /* in the side table, whatever its family */
    d->ip[0] = 1;
}

socklen_t nt_conn_addr(const struct nt_conn *c, int remote, union nt_addr *out)
{
    const struct nt_caddr *d = remote ? &c->remote : &c->local;
    memset(out, 0, sizeof *out);
    switch (d->fam) {
    case AF_INET:
        out->in.sin_family = AF_INET;
        out->in.sin_port = d->port;
        memcpy(&out->in.sin_addr, d->ip, 4);
        return sizeof out->in;
    case AF_INET6:
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = d->port;
        memcpy(&out->in6.sin6_addr, d->ip, 16);
        return sizeof out->in6;
    case AF_UNIX: {
        if (!d->ip[0]) {
            out->un.sun_family = AF_UNIX;
            return sizeof(sa_family_t);
        }
        const struct side_addr *s = side_of(c->idx, 0);
        socklen_t len = s ? s->len[remote] : 0;
        if (len > sizeof *out)
            return 0;
        memcpy(out, &s->a[remote], len);
        return len;
    }
    }
    return 0;
}

