/* Choosing a connection's settings: first matching rule in file order, else
 * [defaults]. Runs at every connect/accept, so: no allocation, no locks,
 * nothing but reads of the config and the key. */
#include "internal.h"

#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

static const uint8_t v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                              0xff, 0xff };

static int sa_is(const struct sockaddr *sa, socklen_t len, int family,
                 size_t need)
{
    return sa && len >= need && sa->sa_family == family;
}

/* The port of an INET/INET6 address; 0 for anything else. */
static uint16_t sa_port(const struct sockaddr *sa, socklen_t len)
{
    if (sa_is(sa, len, AF_INET, sizeof(struct sockaddr_in)))
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa_is(sa, len, AF_INET6, sizeof(struct sockaddr_in6)))
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

static int ports_match(const struct ntc_ports *p, const struct sockaddr *sa,
                       socklen_t len)
{
    if (p->n == 0)
        return 1;
    uint16_t port = sa_port(sa, len);
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].lo <= port && port <= p->v[i].hi)
            return 1;
    return 0;  /* port 0 (not INET) is in no range: ranges start at 1 */
}

static int prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return 0;
    return rest == 0 || ((a[whole] ^ b[whole]) & (0xff00u >> rest)) == 0;
}

static int cidrs_contain(const struct ntc_cidrs *c, int v6, const uint8_t *addr)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].v6 == v6 && prefix_equal(c->v[i].addr, addr, c->v[i].prefix))
            return 1;
    return 0;
}

/* IPv4 networks match IPv4 peers and IPv4-mapped IPv6 peers alike. */
static int remote_match(const struct ntc_cidrs *c, const struct sockaddr *sa,
                        socklen_t len)
{
    if (c->n == 0)
        return 1;
    if (sa_is(sa, len, AF_INET, sizeof(struct sockaddr_in)))
        return cidrs_contain(c, 0, (const uint8_t *)
                             &((const struct sockaddr_in *)sa)->sin_addr);
    if (sa_is(sa, len, AF_INET6, sizeof(struct sockaddr_in6))) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        return cidrs_contain(c, 1, a) ||
               (memcmp(a, v4_mapped_prefix, 12) == 0 && cidrs_contain(c, 0, a + 12));
    }
    return 0;
}

/* The path of a named AF_UNIX address, abstract names as "@name" (as ss(8)
 * shows them); 0 if unnamed or not AF_UNIX. */
static int unix_name(const struct sockaddr *sa, socklen_t len,
                     char buf[sizeof(((struct sockaddr_un *)0)->sun_path) + 2])
{
    const size_t off = offsetof(struct sockaddr_un, sun_path);
    const size_t max = sizeof(((struct sockaddr_un *)0)->sun_path);
    if (!sa_is(sa, len, AF_UNIX, off + 1))
        return 0;
    const char *path = ((const struct sockaddr_un *)sa)->sun_path;
    size_t n = (size_t)len - off < max ? (size_t)len - off : max;
    if (path[0] == '\0') {
        if (n < 2)
            return 0;
        buf[0] = '@';
        memcpy(buf + 1, path + 1, n - 1);   /* stops at an inner NUL below */
        buf[n] = '\0';
        return 1;
    }
    n = strnlen(path, n);
    memcpy(buf, path, n);
    buf[n] = '\0';
    return 1;
}

/* Either side's path: a client connects to the path, a server listens on it;
 * the other side is usually unnamed. */
static int unix_path_match(const char *glob, const struct nt_conn_key *key)
{
    char name[sizeof(((struct sockaddr_un *)0)->sun_path) + 2];
    if (!glob)
        return 1;
    return (unix_name(key->remote, key->remote_len, name) &&
            ntc_glob_match(glob, name, 1)) ||
           (unix_name(key->local, key->local_len, name) &&
            ntc_glob_match(glob, name, 1));
}

static int rule_matches(const struct ntc_rule *r, const struct nt_conn_key *key)
{
    if (r->dir != NT_DIR_ANY && r->dir != key->dir)
        return 0;
    if (r->program && !(key->prog && ntc_glob_match(r->program, key->prog, 0)))
        return 0;
    return ports_match(&r->local_ports, key->local, key->local_len) &&
           ports_match(&r->remote_ports, key->remote, key->remote_len) &&
           remote_match(&r->remotes, key->remote, key->remote_len) &&
           unix_path_match(r->unix_path, key);
}

const struct nt_settings *nt_config_match(const struct nt_config *cfg,
                                          const struct nt_conn_key *key)
{
    if (key) {
        for (size_t i = 0; i < cfg->n_rules; i++)
            if (rule_matches(&cfg->rules[i], key))
                return &cfg->rules[i].eff;
    }
    return &cfg->defaults;
}
