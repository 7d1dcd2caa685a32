/* A blocking splice from a pipe to a socket returns once it has moved
 * what the pipe held, as the kernel's does, even when the pipe held
 * exactly one of the parts the library moves at a time under
 * write_timeout (what the send buffer is sure to take: computed here as
 * the library does). The library asked the now empty pipe for the next
 * part and waited for its writer (this program) for ever; here a SIGALRM
 * after 3 s was the only way out. Found by review 7. */
#include "review.h"

#include <linux/sock_diag.h>
#include <signal.h>

static volatile sig_atomic_t fired;
static void on_alarm(int sig)
{
    (void)sig;
    fired = 1;
}

static void *drain(void *arg)
{
    int s = *(int *)arg;
    char b[65536];
    while (read(s, b, sizeof b) > 0)
        ;
    return NULL;
}

int main(void)
{
    int c, s, p[2];
    tcp_pair_small(&c, &s, 8192);
    pthread_t t;
    if (pipe(p) || pthread_create(&t, NULL, drain, &s))
        return 2;
    usleep(100000);
    uint32_t mi[SK_MEMINFO_VARS];
    socklen_t l = sizeof mi;
    if (getsockopt(c, SOL_SOCKET, SO_MEMINFO, mi, &l))
        return 2;
    uint32_t used = mi[SK_MEMINFO_WMEM_QUEUED] > mi[SK_MEMINFO_WMEM_ALLOC]
                        ? mi[SK_MEMINFO_WMEM_QUEUED] : mi[SK_MEMINFO_WMEM_ALLOC];
    long n = ((long)mi[SK_MEMINFO_SNDBUF] - used) / 2 - 2048;
    if (n <= 0 || n > 65536)
        return 2;
    static char b[65536];
    if (write(p[1], b, (size_t)n) != n)
        return 2;
    struct sigaction sa = { .sa_handler = on_alarm }; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    alarm(3);
    ssize_t r = splice(p[0], NULL, c, NULL, 1 << 20, 0);
    alarm(0);
    printf("splice of a pipe holding a part: %s, before the alarm: %s\n",
           r == n ? "all of it" : r < 0 ? strerror(errno) : "some", fired ? "no" : "yes");
    return 0;
}
