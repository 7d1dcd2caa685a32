/* What glibc believes about the process's threads, with deadlines armed
 * (core_lifecycle, issue 17). The library's timer thread must not change
 * it: a single-threaded program stays one to glibc (its fast paths, and
 * what libstdc++ reads in __libc_single_threaded), and every pattern that
 * needs glibc to know all threads still works: the program's own threads,
 * fork, set*id.
 *
 *   libc_threads_prog flag      one governed connection, then the flag
 *   libc_threads_prog threads   then 4 threads racing malloc and a mutex
 *   libc_threads_prog fork      then a fork child that makes a thread
 *   libc_threads_prog setid     (root) then drop to nobody: every task
 *                               must hold the new credentials
 *   libc_threads_prog atfork-thread  forks whose atfork handler runs a
 *                               short-lived thread (every other one made
 *                               through a libpthread handle, which no
 *                               hook sees), malloc after each
 *   libc_threads_prog setid-signals  (root) set*id from main and from a
 *                               signal handler every 0.5 ms, with forks:
 *                               every task ends with the same credentials
 *   libc_threads_prog initgroups-alarm  initgroups whose group lookup
 *                               blocks (the test puts a FIFO over
 *                               /etc/group): SIGALRM after 1 s still
 *                               interrupts it
 *   libc_threads_prog main-exit main leaves with pthread_exit: the
 *                               process ends (atexit handlers run)
 *
 * stdout is the same with and without the library; stderr says how many
 * tasks the process has (the timer makes it 2). */
#define _GNU_SOURCE
#include <alloca.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static int conn_fd, peer_fd;

/* A loopback connection with one round trip: every deadline armed. */
static void governed_connection(void)
{
    char shown[64], addr[80];
    int l = pc_listen("127.0.0.1:0", 4, shown, sizeof shown);
    snprintf(addr, sizeof addr, "127.0.0.1:%s", shown);
    conn_fd = pc_connect_or_die(addr);
    peer_fd = accept(l, NULL, NULL);
    if (peer_fd < 0)
        pc_die("accept:");
    close(l);
}

static void round_trip(void)
{
    char c = 'x';
    if (write(conn_fd, &c, 1) != 1 || read(peer_fd, &c, 1) != 1 ||
        write(peer_fd, &c, 1) != 1 || read(conn_fd, &c, 1) != 1)
        pc_die("round trip:");
}

static int count_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

#define THREADS 4
#define ROUNDS 200000
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    void *keep[16] = { 0 };
    for (int i = 0; i < ROUNDS; i++) {
        int k = rand_r(&seed) % 16;
        free(keep[k]);
        keep[k] = malloc((size_t)(rand_r(&seed) % 512) + 1);
        pthread_mutex_lock(&mu);
        counter++;
        pthread_mutex_unlock(&mu);
    }
    for (int k = 0; k < 16; k++)
        free(keep[k]);
    return NULL;
}

static void run_threads(const char *who)
{
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)) != 0)
            pc_die("pthread_create:");
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    printf("%s: counter=%ld single=%d\n", who, counter, __libc_single_threaded);
}

/* Uid, Gid and Groups of every task; 1 when all tasks agree. */
static int creds_agree(char *first, size_t len)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int agree = 1, seen = 0;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], buf[4096], creds[512] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(buf, sizeof buf, f))
            if (!strncmp(buf, "Uid:", 4) || !strncmp(buf, "Gid:", 4) ||
                !strncmp(buf, "Groups:", 7))
                strncat(creds, buf, sizeof creds - strlen(creds) - 1);
        fclose(f);
        if (!seen++)
            snprintf(first, len, "%s", creds);
        else if (strcmp(first, creds) != 0) {
            agree = 0;
            fprintf(stderr, "task %s differs:\n%s", e->d_name, creds);
        }
    }
    if (d)
        closedir(d);
    return agree;
}

/* An atfork handler that hands work to a detached helper thread and
 * waits for it; the helper exits while fork carries on. Its stack
 * alternates 48 and 8 MiB, so that its exit trims glibc's stack cache
 * (free() in the exiting thread). */
static sem_t helper_done;
static int fork_round;

static void *helper(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    char *p = alloca(n); /* its work: pages its exit gives back */
    memset(p, 1, n);
    __asm__ volatile("" : : "r"(p) : "memory");
    sem_post(&helper_done);
    return NULL;
}

static void prepare_with_helper(void)
{
    pthread_attr_t at;
    pthread_attr_init(&at);
    int big = fork_round++ % 2 == 0;
    pthread_attr_setstacksize(&at, big ? 48u << 20 : 8u << 20);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int (*create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) =
        pthread_create;
    if (fork_round % 2) /* made through a handle: no interposer sees it */
        create = dlsym(dlopen("libpthread.so.0", RTLD_NOW), "pthread_create");
    /* (a loaded machine, a sanitizer's shadow memory: a 48 MiB stack may
     * be refused for a while; the round then has no helper) */
    int made = 0;
    for (int tries = 0; create && !made && tries < 50; tries++)
        if (!(made = create(&t, &at, helper, (void *)(uintptr_t)(big ? 24u << 20 : 6u << 20)) == 0))
            usleep(10000);
    pthread_attr_destroy(&at);
    while (made && sem_wait(&helper_done) != 0)
        ;
}

static void forks_with_helper(void)
{
    sem_init(&helper_done, 0, 0);
    pthread_atfork(prepare_with_helper, NULL, NULL);
    void *keep[64] = { 0 };
    unsigned seed = 1;
    unsigned long sum = 0;
    for (int r = 0; r < 60; r++) {
        pid_t p = fork();
        if (p < 0)
            pc_die("fork:");
        if (p == 0)
            _exit(0);
        for (int i = 0; i < 50000; i++) {
            int k = rand_r(&seed) % 64;
            free(keep[k]);
            size_t n = (size_t)(rand_r(&seed) % 3000) + 1100;
            keep[k] = malloc(n);
            memset(keep[k], k, n);
            sum += n;
        }
        waitpid(p, NULL, 0);
    }
    printf("forks=60 sum=%lu single=%d\n", sum, __libc_single_threaded);
}

static volatile sig_atomic_t handled;

static void setegid_handler(int sig)
{
    (void)sig;
    setegid((gid_t)(1000 + handled % 50));
    handled++;
}

/* set*id from main and from a handler that may land at any point of
 * main's (the library's window around glibc's broadcast included). */
static void setid_under_signals(void)
{
    struct sigaction sa = { .sa_handler = setegid_handler, .sa_flags = SA_RESTART };
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, 500 }, { 0, 500 } };
    setitimer(ITIMER_REAL, &it, NULL);
    long long end = pc_now_ms() + 2000;
    for (int i = 0; pc_now_ms() < end; i++) {
        setegid((gid_t)(2000 + i % 50));
        if (i % 8 == 0) {
            pid_t p = fork();
            if (p == 0)
                _exit(0);
            while (p > 0 && waitpid(p, NULL, 0) < 0)
                ;
        }
    }
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    setegid(0);
    char creds[512];
    int agree = creds_agree(creds, sizeof creds);
    printf("every task: %s\n%s", agree ? "same credentials" : "DIFFERENT", creds);
    if (!agree)
        exit(PC_EXIT_FAIL);
}

static volatile sig_atomic_t alarmed;

static void on_alarm(int sig)
{
    (void)sig;
    alarmed = 1;
}

static void at_exit(void)
{
    printf("atexit ran\n");
}

int main(int argc, char **argv)
{
    if (argc != 2)
        pc_die("usage: libc_threads_prog flag|threads|fork|setid|atfork-thread|setid-signals|initgroups-alarm|main-exit");
    const char *mode = argv[1];
    setvbuf(stdout, NULL, _IONBF, 0);
    if ((!strcmp(mode, "setid") || !strcmp(mode, "setid-signals") ||
         !strcmp(mode, "initgroups-alarm")) && geteuid() != 0) {
        printf("skip: not root\n");
        return PC_EXIT_SKIP;
    }
    governed_connection();
    round_trip();
    fprintf(stderr, "tasks=%d\n", count_tasks());
    printf("single=%d\n", __libc_single_threaded);

    if (!strcmp(mode, "flag")) {
        round_trip();
        printf("single=%d\n", __libc_single_threaded);
    } else if (!strcmp(mode, "threads")) {
        run_threads("threads");
        round_trip();
    } else if (!strcmp(mode, "fork")) {
        pid_t pid = fork();
        if (pid < 0)
            pc_die("fork:");
        if (pid == 0) {
            printf("child: single=%d\n", __libc_single_threaded);
            run_threads("child");
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        printf("child exit=%d parent: single=%d\n",
               WIFEXITED(st) ? WEXITSTATUS(st) : -1, __libc_single_threaded);
        round_trip();
        run_threads("parent");
    } else if (!strcmp(mode, "setid")) {
        gid_t g = 65534;
        if (initgroups("nobody", g) != 0 || setgroups(1, &g) != 0 ||
            setresgid(g, g, g) != 0 || setresuid(65534, 65534, 65534) != 0)
            pc_die("dropping to nobody:");
        char creds[512];
        int agree = creds_agree(creds, sizeof creds);
        printf("every task: %s\n%s", agree ? "same credentials" : "DIFFERENT", creds);
        printf("single=%d\n", __libc_single_threaded);
        round_trip();
        if (!agree)
            return PC_EXIT_FAIL;
    } else if (!strcmp(mode, "atfork-thread")) {
        forks_with_helper();
        round_trip();
    } else if (!strcmp(mode, "setid-signals")) {
        setid_under_signals();
        round_trip();
    } else if (!strcmp(mode, "initgroups-alarm")) {
        struct sigaction sa = { .sa_handler = on_alarm }; /* no SA_RESTART */
        sigaction(SIGALRM, &sa, NULL);
        alarm(1);
        int r = initgroups("root", 0);
        printf("initgroups=%d %s alarm=%d\n", r, r ? strerror(errno) : "", (int)alarmed);
    } else if (!strcmp(mode, "main-exit")) {
        atexit(at_exit);
        printf("main leaves\n");
        pthread_exit(NULL);
    } else {
        pc_die("unknown mode %s", mode);
    }
    return 0;
}
