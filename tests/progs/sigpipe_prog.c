/* sigpipe_prog [-f tcp4|tcp6|unix] [-c write|send|sendto|sendmsg|writev]
 *              default|ignore|handler|nosignal
 *
 * Writes to a connection whose peer has closed, with SIGPIPE:
 *   default   SIG_DFL: the process must die of SIGPIPE
 *   ignore    SIG_IGN: the write fails with EPIPE
 *   handler   a handler: it runs once per failed write, write fails EPIPE
 *   nosignal  SIG_DFL but MSG_NOSIGNAL on send/sendto/sendmsg: EPIPE, no
 *             signal (with -c write/writev it falls back to send)
 * Prints "ok-writes N errno NAME handler H" when it survives. TCP may
 * accept one write after the peer's FIN (the peer answers with RST). */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static volatile sig_atomic_t handled;

static void on_sigpipe(int sig)
{
    handled++;
}

static ssize_t put(const char *call, int fd, int flags)
{
    char b = 'x';
    struct iovec v = {&b, 1};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    if (!strcmp(call, "write"))
        return flags ? send(fd, &b, 1, flags) : write(fd, &b, 1);
    if (!strcmp(call, "writev"))
        return flags ? send(fd, &b, 1, flags) : writev(fd, &v, 1);
    if (!strcmp(call, "send"))
        return send(fd, &b, 1, flags);
    if (!strcmp(call, "sendto"))
        return sendto(fd, &b, 1, flags, NULL, 0);
    if (!strcmp(call, "sendmsg"))
        return sendmsg(fd, &m, flags);
    pc_die("bad call '%s'", call);
}

int main(int argc, char **argv)
{
    const char *call = "write", *mode;
    int family = AF_INET, flags = 0, opt, c, s, ok = 0, err = 0;
    char b;
    while ((opt = getopt(argc, argv, "f:c:")) != -1) {
        if (opt == 'f')
            family = pc_family(optarg);
        else if (opt == 'c')
            call = optarg;
        else
            pc_die("usage: sigpipe_prog [-f FAMILY] [-c CALL] default|ignore|handler|nosignal");
    }
    if (optind != argc - 1)
        pc_die("usage: sigpipe_prog [-f FAMILY] [-c CALL] default|ignore|handler|nosignal");
    mode = argv[optind];
    if (!strcmp(mode, "ignore")) {
        signal(SIGPIPE, SIG_IGN);
    } else if (!strcmp(mode, "handler")) {
        struct sigaction sa = {.sa_handler = on_sigpipe};
        sigaction(SIGPIPE, &sa, NULL);
    } else if (!strcmp(mode, "nosignal")) {
        flags = MSG_NOSIGNAL;
    } else if (strcmp(mode, "default")) {
        pc_die("bad mode '%s'", mode);
    }
    pc_pair(family, &c, &s);
    close(s);
    if (read(c, &b, 1) != 0)          /* wait for the FIN */
        pc_die("expected EOF");
    for (int i = 0; i < 10; i++) {
        if (put(call, c, flags) < 0) {
            err = errno;
            break;
        }
        ok++;
        usleep(10000);                /* let the peer's RST arrive */
    }
    printf("ok-writes %d errno %s handler %d\n", ok, err ? strerrorname_np(err) : "none",
           (int)handled);
    return err == EPIPE ? 0 : PC_EXIT_FAIL;
}
