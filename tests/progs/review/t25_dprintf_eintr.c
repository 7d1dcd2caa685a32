/* dprintf interrupted by a handler without SA_RESTART fails with EINTR, as
 * glibc's file write does. */
#include "review.h"
#include <signal.h>
#include <sys/wait.h>
static void h(int s) { (void)s; }
int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = h;
  sigaction(SIGALRM, &sa, 0); /* no SA_RESTART */
  int c, p;
  tcp_pair(&c, &p);
  /* fill the send path */
  int fl = fcntl(c, F_GETFL);
  fcntl(c, F_SETFL, fl | O_NONBLOCK);
  char junk[65536] = {0};
  long tot = 0;
  ssize_t w;
  while ((w = write(c, junk, sizeof junk)) > 0)
    tot += w;
  fcntl(c, F_SETFL, fl);
  pid_t k = fork();
  if (!k) {
    sleep(2);
    char b[65536];
    while (read(p, b, sizeof b) > 0)
      ;
    _exit(0);
  }
  close(p);
  alarm(1);
  int r = dprintf(c, "%s", "hello");
  (void)tot;
  printf("dprintf = %d errno=%s\n", r, r < 0 ? strerror(errno) : "-");
  close(c);
  kill(k, SIGKILL);
  wait(0);
  return 0;
}
