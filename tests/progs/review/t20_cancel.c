#include "review.h"
/* A thread with a deferred cancel pending calls read, then send, on a
 * governed blocking socket whose data and buffer space are there: glibc's
 * read and send act on the pending cancel at entry. Under the library
 * with read/write deadlines the call is first tried without blocking (a
 * raw system call when glibc's own recv/send are next, real.h): the
 * cancel must still act there, not at some later call. */
static int fd;
static void *reader(void *arg)
{
    char b[4];
    (void)arg;
    pthread_cancel(pthread_self());
    ssize_t n = read(fd, b, 1);
    printf("read returned %zd: cancel not acted on\n", n);
    return NULL;
}
static void *sender(void *arg)
{
    (void)arg;
    pthread_cancel(pthread_self());
    ssize_t n = send(fd, "y", 1, 0);
    printf("send returned %zd: cancel not acted on\n", n);
    return NULL;
}
static void run(const char *what, void *(*f)(void *))
{
    pthread_t t;
    void *r;
    pthread_create(&t, NULL, f, NULL);
    pthread_join(t, &r);
    printf("%s: %s\n", what, r == PTHREAD_CANCELED ? "cancelled" : "returned");
}
int main(void)
{
    int cli, srv;
    tcp_pair(&cli, &srv);
    if (write(cli, "x", 1) != 1) { perror("write"); return 1; }
    usleep(20000); /* the byte is there */
    fd = srv;
    run("read with data there", reader);
    run("send with room", sender);
    char b[4];
    printf("data still there: %zd\n", read(srv, b, 1));
    return 0;
}
