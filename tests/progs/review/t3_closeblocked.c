#include "review.h"
#include <linux/close_range.h>
#include <sys/syscall.h>
static int c, s;
static void *reader(void *arg)
{
    char b[16];
    ssize_t r = read(c, b, sizeof b);
    int e = errno;
    printf("blocked read returned %zd (%s)\n", r, r < 0 ? strerror(e) : "data");
    return arg;
}
int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "close";
    tcp_pair(&c, &s);
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    usleep(300000);
    int fd = c;
    if (!strcmp(mode, "close"))
        close(fd);
    else
        close_range(fd, fd, 0);
    int a = open("/dev/null", O_RDONLY), b = open("/dev/null", O_RDONLY), d = open("/dev/null", O_RDONLY);
    printf("%s(%d); next opens got %d %d %d\n", mode, fd, a, b, d);
    usleep(300000);
    write(s, "hi", 2);
    pthread_join(t, NULL);
    return 0;
}
