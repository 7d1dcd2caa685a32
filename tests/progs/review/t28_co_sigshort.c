#include "review.h"
#include <signal.h>
#include <sys/time.h>
/* Coalescing: small writes held, then 60000-byte blocking writes to a peer
 * that reads only after 0.3 s (small buffers), while an SA_RESTART
 * SIGALRM handler runs every 20 ms. The kernel returns a short count from
 * the first big write (a write that moved data is never restarted); the
 * library's flush wait restarted it and returned the full count. */
static int pfd[2], c, s;
static long idx;
static void on_alrm(int sig) { (void)sig; int e = errno; ssize_t w = write(pfd[1], "!", 1); (void)w; errno = e; }
static void fill(char *b, size_t n) { for (size_t i = 0; i < n; i++) b[i] = (char)(idx++ % 251); }
static void *reader(void *a)
{
    usleep(300000);
    long pos = 0, bad = -1;
    char b[4096];
    ssize_t r;
    while ((r = read(s, b, sizeof b)) > 0)
        for (ssize_t i = 0; i < r; i++) { if (bad < 0 && (unsigned char)b[i] != pos % 251) bad = pos; pos++; }
    printf("peer: stream %s\n", bad < 0 ? "in order" : "corrupt");
    return a;
}
int main(void)
{
    tcp_pair_small(&c, &s, 4096);
    if (pipe2(pfd, O_NONBLOCK)) return 2;
    struct sigaction sa = { .sa_handler = on_alrm, .sa_flags = SA_RESTART };
    sigaction(SIGALRM, &sa, NULL);
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    static char buf[60000];
    for (int k = 0; k < 3; k++) { fill(buf, 100); if (write(c, buf, 100) != 100) return 3; }
    struct itimerval it = { { 0, 20000 }, { 0, 20000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    const char *how = "full";
    for (int k = 0; k < 20; k++) { fill(buf, 100); if (write(c, buf, 100) != 100) return 3; }
    fill(buf, sizeof buf);
    ssize_t r = write(c, buf, sizeof buf);
    if (r <= 0) how = "failed";
    else if (r < (ssize_t)sizeof buf) { how = "short"; idx -= (long)sizeof buf - r; }
    struct itimerval z = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &z, NULL);
    printf("big write interrupted by SA_RESTART signal: %s\n", how);
    fflush(stdout);
    shutdown(c, SHUT_WR);
    pthread_join(t, NULL);
    return 0;
}
