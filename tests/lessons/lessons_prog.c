/* Scenarios from shared/LESSONS.md, each a mode of one program.
 *
 *   lessons_prog unseen-close   a socket closed where no hook sees it
 *                               (fclose of an fdopen'ed socket, raw
 *                               syscall), its number reused by a file
 *   lessons_prog flags          file flags untouched by a governed wait
 *   lessons_prog sockflags ADDR SOCK_NONBLOCK|SOCK_CLOEXEC socket waiting
 *                               in poll on a silent peer
 *   lessons_prog vfork          vfork and posix_spawn children while
 *                               deadlines are armed in the parent
 *
 * Prints "result=..." lines; exit 0 when the scenario behaved, 1 when not. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

extern char **environ;

static int fail(const char *what)
{
    printf("result=FAIL %s (errno %s)\n", what, strerrorname_np(errno));
    return 1;
}

/* A connected, governed pair, closed without the library seeing it; a
 * file then takes the number. Reads of the file must be plain reads. */
static int unseen_close_one(int use_fclose)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    int hold = open("/dev/null", O_RDONLY); /* fills the listener's old number */
    if (write(c, "x", 1) != 1) /* the slot is now a live connection */
        return fail("write");
    if (use_fclose) {
        FILE *f = fdopen(c, "r+");
        fclose(f); /* glibc closes internally: no hook sees it */
    } else {
        syscall(SYS_close, c);
    }
    int fd = open("/proc/self/cmdline", O_RDONLY);
    if (fd != c)
        return fail("fd number not reused");
    char a[256], b[256];
    ssize_t n = read(fd, a, sizeof a);
    int fd2 = open("/proc/self/cmdline", O_RDONLY);
    ssize_t m = read(fd2, b, sizeof b);
    if (n <= 0 || n != m || memcmp(a, b, (size_t)n) != 0)
        return fail("read of the reused fd differs");
    close(fd);
    close(fd2);
    close(s);
    close(hold);
    return 0;
}

static int unseen_close(void)
{
    if (unseen_close_one(1) || unseen_close_one(0))
        return 1;
    usleep(1500 * 1000); /* past any idle deadline armed for the socket */
    printf("result=ok\n");
    return 0;
}

/* A blocking read under a read deadline waits in the library, which must
 * not touch O_NONBLOCK; neither may a non-blocking socket's flag move. */
static int flags(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    int before = fcntl(c, F_GETFL);
    char buf[8];
    if (write(s, "hi", 2) != 2 || read(c, buf, sizeof buf) != 2)
        return fail("exchange");
    ssize_t r = read(c, buf, sizeof buf); /* waits until the deadline */
    int after = fcntl(c, F_GETFL);
    if (r != -1 || errno != ETIMEDOUT)
        return fail("read should time out");
    if (before != after)
        return fail("file flags changed");
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
    before = fcntl(s, F_GETFL);
    r = read(s, buf, sizeof buf);
    if (r != -1 || errno != EAGAIN || fcntl(s, F_GETFL) != before)
        return fail("non-blocking read");
    printf("result=ok\n");
    return 0;
}

static int sockflags(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (pc_parse_addr(addr, &ss, &len) != 0)
        pc_die("bad address %s", addr);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    long long t0 = pc_now_ms();
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS)
        return fail("connect");
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    poll(&p, 1, 5000);
    p.events = POLLIN;
    int n = poll(&p, 1, 5000); /* the silent peer never writes */
    char buf[8];
    ssize_t r = n == 1 ? read(fd, buf, sizeof buf) : -2;
    printf("result=%s elapsed_ms=%lld\n", r == 0 ? "eof" : r == -2 ? "hang" : "other",
           pc_now_ms() - t0);
    return r == 0 ? 0 : 1;
}

/* Children that share the parent's memory (vfork, posix_spawn) call
 * hooked functions before exec: they must not lock up or corrupt the
 * parent's state. */
static int vfork_children(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    for (int i = 0; i < 20; i++) {
        pid_t pid = vfork();
        if (pid == 0) {
            int d = dup(c); /* hooked calls in the vfork child */
            close(d);
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
            WEXITSTATUS(st) != 0)
            return fail("vfork child");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addclose(&fa, c);
        char *argv[] = { "true", NULL };
        if (posix_spawn(&pid, "/bin/true", &fa, NULL, argv, environ) != 0 ||
            waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
            return fail("posix_spawn child");
        posix_spawn_file_actions_destroy(&fa);
    }
    char buf[8];
    if (write(c, "ok", 2) != 2 || read(s, buf, sizeof buf) != 2)
        return fail("parent's connection after the children");
    printf("result=ok\n");
    return 0;
}

/* LESSONS 4 and 13: the unwinder's own descriptors. An event with a
 * backtrace (EPIPE) loads libunwind, which opens a pipe; the program's
 * next descriptor must get the number it gets without the library. Then
 * the program closes every fd (closefrom) and reuses the numbers: a
 * second event must neither touch nor hang on the program's sockets. */
static int unwinder_fds(void)
{
    signal(SIGPIPE, SIG_IGN);
    int c, s;
    pc_pair(AF_INET, &c, &s);
    close(s);
    char x = 'x';
    while (write(c, &x, 1) >= 0) /* EPIPE once the RST is back: an event */
        usleep(1000);
    int probe = open("/dev/null", O_RDONLY);
    printf("next_fd=%d\n", probe);
    close(probe);
    closefrom(3);
    int l, a, b;
    pc_pair(AF_INET, &a, &b); /* fresh numbers where the pipe was */
    (void)l;
    close(b);
    while (write(a, &x, 1) >= 0) /* a second event, a second unwind */
        usleep(1000);
    int c2, s2;
    pc_pair(AF_INET, &c2, &s2);
    if (write(c2, "hello", 5) != 5)
        return fail("write");
    char buf[8] = "";
    ssize_t r = read(s2, buf, sizeof buf);
    printf("result=%s\n", r == 5 && !memcmp(buf, "hello", 5) ? "ok" : "corrupt");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        pc_die("usage: lessons_prog MODE [ARGS]");
    if (strcmp(argv[1], "unseen-close") == 0)
        return unseen_close();
    if (strcmp(argv[1], "flags") == 0)
        return flags();
    if (strcmp(argv[1], "sockflags") == 0 && argc > 2)
        return sockflags(argv[2]);
    if (strcmp(argv[1], "unwinder-fds") == 0)
        return unwinder_fds();
    if (strcmp(argv[1], "vfork") == 0)
        return vfork_children();
    pc_die("unknown mode %s", argv[1]);
}
