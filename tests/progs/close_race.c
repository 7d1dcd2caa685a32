/* close_race [-f tcp4|tcp6|unix] [-m shutdown|close|reuse|race] [-i ITER]
 *
 * One thread blocks in read() on a connected socket while the main thread
 * pulls the socket away:
 *   shutdown  shutdown(SHUT_RDWR): prints "shutdown read=R" (Linux: 0).
 *   close     close(): Linux leaves the blocked read waiting on the open
 *             file; prints "close blocked=B", then the peer writes one
 *             byte and prints "after-peer-write read=R data=D".
 *   reuse     close(), then a pipe takes the fd number and holds data
 *             of its own, then the old peer writes one byte: the read in
 *             progress must return that byte, never the pipe's data.
 *             Prints "reuse blocked=B" and "after-peer-write read=R data=D".
 *   race      ITER rounds of close() racing a read that may or may not
 *             have started, with new sockets immediately reusing the fd
 *             number; the peer then closes so every read ends. Prints
 *             "race rounds N hung H".
 * A read still blocked after 5 s counts as hung (exit 1, never a hang). */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct reader {
    pthread_t t;
    volatile pid_t tid;
    int fd;
    volatile int done;
    ssize_t rc;
    int err;
    char data[8];
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    r->tid = gettid();
    r->rc = read(r->fd, r->data, sizeof r->data - 1);
    r->err = errno;
    r->done = 1;
    return NULL;
}

static void start_reader(struct reader *r, int fd)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    if (pthread_create(&r->t, NULL, reader_main, r) != 0)
        pc_die("pthread_create failed");
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Until the reader sleeps in the kernel (in read, or in whatever the
 * library waits with): a fixed sleep is not enough on a loaded machine. */
static void wait_blocked(struct reader *r)
{
    char path[64], buf[256];
    for (int i = 0; i < 5000; i++) {
        int fd;
        ssize_t n = 0;
        char *p;
        if (r->tid) {
            snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)r->tid);
            if ((fd = open(path, O_RDONLY)) >= 0) {
                n = read(fd, buf, sizeof buf - 1);
                close(fd);
            }
        }
        buf[n > 0 ? n : 0] = 0;
        if ((p = strrchr(buf, ')')) && p[1] == ' ' && p[2] == 'S')
            break;
        sleep_us(1000);
    }
    sleep_us(20000);
}

/* Join within 5 s; 0 when the reader finished, -1 when it is still blocked. */
static int join_reader(struct reader *r)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    return pthread_timedjoin_np(r->t, NULL, &dl) == 0 ? 0 : -1;
}

static void describe(const char *what, const struct reader *r)
{
    if (r->rc < 0)
        printf("%s read=-1 errno=%s\n", what, strerrorname_np(r->err));
    else
        printf("%s read=%zd data=%s\n", what, r->rc, r->data);
}

int main(int argc, char **argv)
{
    const char *mode = "shutdown";
    int family = AF_INET, opt, c, s, hung = 0;
    long iters = 200;
    struct reader r;
    while ((opt = getopt(argc, argv, "f:m:i:")) != -1) {
        switch (opt) {
        case 'f': family = pc_family(optarg); break;
        case 'm': mode = optarg; break;
        case 'i': iters = pc_num(optarg); break;
        default: pc_die("usage: close_race [-f FAMILY] [-m shutdown|close|reuse|race] [-i N]");
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(mode, "race")) {
        int p[2];
        pc_pair(family, &c, &s);
        start_reader(&r, c);
        wait_blocked(&r);
        if (!strcmp(mode, "shutdown")) {
            shutdown(c, SHUT_RDWR);
        } else if (!strcmp(mode, "close") || !strcmp(mode, "reuse")) {
            close(c);
            if (mode[0] == 'r' && (pipe(p) < 0 || (p[0] != c && p[1] != c) ||
                                   write(p[1], "PIPE", 4) != 4))
                pc_die("the pipe did not take fd %d:", c);
            sleep_us(100000);
            printf("%s blocked=%d\n", mode, !r.done);
            if (write(s, "x", 1) != 1)
                pc_die("peer write:");
        } else {
            pc_die("bad mode '%s'", mode);
        }
        if (join_reader(&r) < 0) {
            printf("hung\n");
            _exit(PC_EXIT_FAIL);            /* the reader thread is stuck */
        }
        describe(mode[0] == 's' ? "shutdown" : "after-peer-write", &r);
        return 0;
    }
    for (long i = 0; i < iters; i++) {
        int filler;
        pc_pair(family, &c, &s);
        start_reader(&r, c);
        sleep_us(i % 7 * 50);              /* sometimes before, sometimes in read */
        close(c);
        filler = socket(family, SOCK_STREAM, 0);   /* likely takes c's number */
        close(s);                                  /* FIN ends a read in progress */
        if (join_reader(&r) < 0) {
            hung++;
            break;                                 /* the thread is lost */
        }
        close(filler);
    }
    printf("race rounds %ld hung %d\n", iters, hung);
    if (hung)
        _exit(PC_EXIT_FAIL);
    return 0;
}
