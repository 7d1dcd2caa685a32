/* An abandoned unix exchange with only read_timeout set reports its duration.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(void) {
  struct sockaddr_un u = {.sun_family = AF_UNIX};
  snprintf(u.sun_path, sizeof u.sun_path, "/tmp/nt-t27-%d.sock", (int)getpid());
  unlink(u.sun_path);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  bind(l, (void *)&u, sizeof u);
  listen(l, 1);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  connect(c, (void *)&u, sizeof u);
  int p = accept(l, 0, 0);
  write(c, "GET", 3);
  usleep(300000);
  close(c);
  close(p);
  unlink(u.sun_path);
  return 0;
}
