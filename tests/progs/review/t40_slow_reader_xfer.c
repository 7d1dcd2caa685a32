/* A blocking sendfile of 300000 bytes to a peer that reads
 * 4 KiB every 100 ms: the peer drains all the time, so write_timeout
 * (1.5 s) must never cut the call, as it does not cut a write. The
 * library restarted the deadline only on POLLOUT, which TCP reports once
 * a third of the send buffer is free, and cut the call at 1.5 s with about
 * half sent (review 8, N1). */
#include "review.h"

#include <sys/sendfile.h>
#include <sys/wait.h>

#define TOTAL 300000

/* connected TCP pair: the sender's send buffer 64 KiB, the reader's
 * receive buffer 16 KiB (set before the connection) */
static void pair(int *cli, int *srv)
{
    int l = socket(AF_INET, SOCK_STREAM, 0), rb = 16384, sb = 65536;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (bind(l, (void *)&a, sizeof a) || listen(l, 4) || getsockname(l, (void *)&a, &len))
        exit(2);
    *srv = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(*srv, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    if (connect(*srv, (void *)&a, sizeof a))
        exit(2);
    *cli = accept(l, NULL, NULL);
    setsockopt(*cli, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
    close(l);
}

static void one(const char *call)
{
    int c, s;
    pair(&c, &s);
    pid_t pid = fork();
    if (pid == 0) { /* the slow, steady reader */
        close(c);
        char b[4096];
        usleep(200000);
        while (read(s, b, sizeof b) > 0)
            usleep(100000);
        _exit(0);
    }
    close(s);
    static char blk[TOTAL];
    memset(blk, 'x', sizeof blk);
    ssize_t r;
    if (!strcmp(call, "sendfile")) {
        char path[] = "/tmp/t40XXXXXX";
        int f = mkstemp(path);
        unlink(path);
        if (f < 0 || write(f, blk, TOTAL) != TOTAL || lseek(f, 0, SEEK_SET) != 0)
            exit(2);
        r = sendfile(c, f, NULL, TOTAL);
        close(f);
    } else {
        int p[2];
        if (pipe(p) || fcntl(p[1], F_SETPIPE_SZ, TOTAL) < TOTAL ||
            write(p[1], blk, TOTAL) != TOTAL)
            exit(2);
        r = splice(p[0], NULL, c, NULL, TOTAL, 0);
        close(p[0]);
        close(p[1]);
    }
    printf("%s of %d bytes to a slow steady reader: %zd %s\n", call, TOTAL, r,
           r < 0 ? strerror(errno) : "");
    fflush(stdout);
    close(c);
    waitpid(pid, NULL, 0);
}

int main(void)
{
    one("sendfile");
    return 0;
}
