/* thread_stress [-t THREADS] [-c CONNS] [-n BYTES] [-f FORKS] [-p SPAWNS] [ADDR]
 *
 * THREADS threads each make CONNS sequential connections to ADDR (an echo
 * server) and exchange BYTES on each, checking every byte. Without ADDR the
 * program serves itself: an in-process echo server on 127.0.0.1, so both
 * ends of every connection live in this (governed) process.
 *
 * While the workers are mid-transfer the main thread forks FORKS times; each
 * child makes its own connection and exchange and _exits (an alarm turns a
 * deadlock in the child into a SIGALRM death). -p adds SPAWNS children
 * started with vfork+exec and posix_spawn of /bin/true from the busy process.
 *
 * Prints "conns OK/TOTAL forks OK/FORKS spawns OK/SPAWNS"; the exit status
 * is 0 only when everything succeeded. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *addr;
static long nconns = 20;
static size_t nbytes = 65536;
static atomic_long ok_conns, running;

static int one_exchange(void)
{
    uint64_t fnv = PC_FNV_INIT;
    int fd = pc_connect(addr), rc;
    if (fd < 0) {
        dprintf(2, "connect: %s\n", strerror(errno));
        return -1;
    }
    rc = pc_echo_exchange(fd, nbytes, 4096, &fnv);
    close(fd);
    return rc;
}

static void *worker(void *arg)
{
    for (long i = 0; i < nconns; i++)
        if (one_exchange() == 0)
            atomic_fetch_add(&ok_conns, 1);
    atomic_fetch_sub(&running, 1);
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* 1 when the child exited 0; says what happened otherwise. */
static int reap(pid_t pid, const char *what)
{
    int st;
    if (pid < 0) {
        fprintf(stderr, "%s: %s\n", what, strerror(errno));
        return 0;
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 1;
    if (WIFSIGNALED(st))
        fprintf(stderr, "%s child killed by signal %d\n", what, WTERMSIG(st));
    else
        fprintf(stderr, "%s child exited %d\n", what, WEXITSTATUS(st));
    return 0;
}

static int fork_child(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20);     /* a deadlocked child dies of SIGALRM instead of hanging */
        _exit(one_exchange() == 0 ? 0 : 1);
    }
    return reap(pid, "fork");
}

static int spawn_child(long i)
{
    char *argv[] = {"/bin/true", NULL};
    pid_t pid;
    if (i % 2) {
        pid = vfork();
        if (pid == 0) {
            execve(argv[0], argv, environ);
            _exit(127);
        }
        return reap(pid, "vfork");
    }
    errno = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
    return reap(errno ? -1 : pid, "posix_spawn");
}

int main(int argc, char **argv)
{
    long nthreads = 8, nforks = 0, nspawns = 0, ok_forks = 0, ok_spawns = 0;
    char port[32], buf[64];
    pthread_t *t;
    int opt;
    while ((opt = getopt(argc, argv, "t:c:n:f:p:")) != -1) {
        switch (opt) {
        case 't': nthreads = pc_num(optarg); break;
        case 'c': nconns = pc_num(optarg); break;
        case 'n': nbytes = pc_num(optarg); break;
        case 'f': nforks = pc_num(optarg); break;
        case 'p': nspawns = pc_num(optarg); break;
        default: pc_die("usage: thread_stress [-t N] [-c N] [-n BYTES] [-f N] [-p N] [ADDR]");
        }
    }
    if (optind < argc) {
        addr = argv[optind];
    } else {
        int lfd = pc_listen("127.0.0.1:0", 512, port, sizeof port);
        snprintf(buf, sizeof buf, "127.0.0.1:%s", port);
        addr = buf;
        pc_start_echo_acceptor(lfd);
    }
    t = calloc(nthreads, sizeof *t);
    running = nthreads;
    for (long i = 0; i < nthreads; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0)
            pc_die("pthread_create failed");
    /* Fork and spawn while the workers are busy (spread over their run). */
    for (long i = 0; i < nforks || i < nspawns; i++) {
        sleep_ms(5);
        if (i < nforks)
            ok_forks += fork_child();
        if (i < nspawns)
            ok_spawns += spawn_child(i);
    }
    for (long i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    printf("conns %ld/%ld forks %ld/%ld spawns %ld/%ld\n", (long)ok_conns,
           nthreads * nconns, ok_forks, nforks, ok_spawns, nspawns);
    free(t);
    return ok_conns == nthreads * nconns && ok_forks == nforks && ok_spawns == nspawns
               ? 0 : PC_EXIT_FAIL;
}
