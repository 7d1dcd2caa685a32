/* A blocked recv whose descriptor a raw syscall closed, and whose number a new
 * socket took: it must never read the new socket's bytes. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
static int X;
static long rawclose(int fd) {
  long r;
  __asm__ volatile("syscall"
                   : "=a"(r)
                   : "a"((long)SYS_close), "D"((long)fd)
                   : "rcx", "r11", "memory");
  return r;
}
static void *t(void *a) {
  (void)a;
  char b[100] = {0};
  ssize_t n = recv(X, b, sizeof b - 1, 0);
  printf("blocked recv on fd %d = %zd errno=%s data='%s'\n", X, n,
         n < 0 ? strerror(errno) : "-", n > 0 ? b : "");
  return 0;
}
int main(void) {
  setvbuf(stdout, 0, _IONBF, 0);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  bind(l, (void *)&a, al);
  listen(l, 4);
  getsockname(l, (void *)&a, &al);
  X = socket(AF_INET, SOCK_STREAM, 0);
  connect(X, (void *)&a, al);
  int px = accept(l, 0, 0);
  pthread_t th;
  pthread_create(&th, 0, t, 0);
  usleep(300000);
  printf("raw close(%d) = %ld\n", X, rawclose(X));
  int Y = socket(AF_INET, SOCK_STREAM, 0);
  connect(Y, (void *)&a, al);
  int py = accept(l, 0, 0);
  printf("new socket Y got fd %d\n", Y);
  write(py, "from-Y", 6);
  sleep(2);
  write(px, "from-X", 6);
  pthread_join(th, 0);
  char b[16] = {0};
  struct timeval tv = {0, 200000};
  setsockopt(Y, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t n = recv(Y, b, 15, MSG_DONTWAIT);
  printf("Y then has %zd '%s'\n", n, n > 0 ? b : "");
  return 0;
}
