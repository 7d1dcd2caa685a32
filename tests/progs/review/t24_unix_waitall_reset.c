/* Unix stream: a MSG_WAITALL read that meets a reset returns the bytes and the
 * error is gone (the kernel's read consumes it), unlike TCP. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(void) {
  struct sockaddr_un u = {.sun_family = AF_UNIX};
  strcpy(u.sun_path, "/tmp/rev-eng/wa.sock");
  unlink(u.sun_path);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  bind(l, (void *)&u, sizeof u);
  listen(l, 1);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(c, (void *)&u, sizeof u)) {
    perror("connect");
    return 1;
  }
  int p = accept(l, 0, 0);
  write(c, "unread", 6); /* the peer never reads this */
  char b[200] = {0};
  write(p, b, 100);
  close(p); /* close with unread input: c gets ECONNRESET pending */
  ssize_t r = recv(c, b, 200, MSG_WAITALL);
  printf("recv WAITALL(200) = %zd %s\n", r, r < 0 ? strerror(errno) : "");
  r = recv(c, b, 200, 0);
  printf("next recv = %zd %s\n", r, r < 0 ? strerror(errno) : "");
  r = recv(c, b, 200, 0);
  printf("next recv = %zd %s\n", r, r < 0 ? strerror(errno) : "");
  unlink(u.sun_path);
  return 0;
}
