/* closeall -m range|from|loop|syscall|dup2 ADDR
 *
 * Behaves like a daemon at start-up: gets rid of every fd >= 3 it did not
 * open itself (which includes any the preloaded library holds), then does
 * network I/O on fds that reuse those numbers:
 *   range    close_range(3, ~0U, 0)        from     closefrom(3)
 *   loop     close() on 3 .. getdtablesize()-1
 *   syscall  raw syscall(SYS_close_range), which no interposer sees
 *   dup2     dup2(/dev/null) over 3..1023, then close them
 * Then: opens a few files, exchanges data with ADDR (an echo server) and
 * over an in-process connected pair, and runs /bin/true. Prints
 * "bytes N fnv HEX" and exits 0, or 1 when something failed. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void close_everything(const char *mode)
{
    if (!strcmp(mode, "range")) {
        if (close_range(3, ~0U, 0) < 0)
            pc_die("close_range:");
    } else if (!strcmp(mode, "from")) {
        closefrom(3);
    } else if (!strcmp(mode, "loop")) {
        for (int fd = 3, max = getdtablesize(); fd < max; fd++)
            close(fd);
    } else if (!strcmp(mode, "syscall")) {
        if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
            pc_die("SYS_close_range:");
    } else if (!strcmp(mode, "dup2")) {
        int null = open("/dev/null", O_RDWR);
        for (int fd = 3; fd < 1024; fd++)
            if (fd != null)
                dup2(null, fd);
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
    } else {
        pc_die("bad mode '%s'", mode);
    }
}

int main(int argc, char **argv)
{
    uint64_t fnv = PC_FNV_INIT;
    int files[3], fd, c, s, st, ok = 1;
    pid_t pid;
    if (argc != 4 || strcmp(argv[1], "-m"))
        pc_die("usage: closeall -m range|from|loop|syscall|dup2 ADDR");
    close_everything(argv[2]);

    for (int i = 0; i < 3; i++)        /* take the lowest numbers back */
        files[i] = open("/dev/null", O_RDONLY);
    fd = pc_connect(argv[3]);
    if (fd < 0)
        pc_die("connect %s:", argv[3]);
    ok &= pc_echo_exchange(fd, 256 * 1024, 16384, &fnv) == 0;
    close(fd);
    for (int i = 0; i < 3; i++)
        close(files[i]);

    pc_pair(AF_INET, &c, &s);          /* both ends in this process */
    ok &= write(c, "ping", 4) == 4 && read(s, files, 4) == 4 && !memcmp(files, "ping", 4);
    close(c);
    close(s);

    pid = fork();
    if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    ok &= pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    printf("bytes %d fnv %016llx\n", 256 * 1024, (unsigned long long)fnv);
    return ok ? 0 : PC_EXIT_FAIL;
}
