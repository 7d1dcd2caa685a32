/* A handled SIGPIPE (no SA_RESTART), sent by another process with kill(),
 * arrives while the program is blocked in sendfile on connection B (peer
 * reads only after 2 s), just after a small write on coalesced connection
 * A. The kernel interrupts the sendfile at once (short count or EINTR). */
#include "review.h"
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/wait.h>
static volatile sig_atomic_t got;
static double t0;
static void on_pipe(int sig) {
  (void)sig;
  got = 1;
}
int main(void) {
  int a, as, b, bs;
  tcp_pair(&a, &as);
  tcp_pair_small(&b, &bs, 4096);
  FILE *f = tmpfile();
  static char big[1 << 20];
  fwrite(big, 1, sizeof big, f);
  fflush(f);
  pid_t me = getpid();
  if (fork() == 0) {
    close(b);
    usleep(300000);
    kill(me, SIGPIPE);
    sleep(2);
    char buf[65536];
    while (read(bs, buf, sizeof buf) > 0)
      ;
    _exit(0);
  }
  close(bs);
  struct sigaction sa = {.sa_handler = on_pipe};
  sigaction(SIGPIPE, &sa, NULL);
  t0 = now_s();
  write(a, "hello", 5); /* held (coalescing) */
  off_t off = 0;
  ssize_t r = sendfile(b, fileno(f), &off, sizeof big);
  /* how much fit before the signal is the kernel's timing: short or not */
  printf("sendfile returned %s (%s) after %.2f s, handler ran: %d\n",
         r < 0 ? "-1" : (size_t)r < sizeof big ? "short" : "all",
         r < 0 ? strerror(errno) : "-", now_s() - t0, (int)got);
  return 0;
}
