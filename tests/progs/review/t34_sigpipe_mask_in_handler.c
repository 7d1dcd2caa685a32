/* Coalesced bytes are held on connection A; the program then makes a
 * blocking sendfile on connection B whose peer reads only after 2 s. A
 * SIGALRM handler, run during that sendfile, writes to a pipe whose reader
 * is gone. SIGPIPE is at its default: the kernel kills the process in the
 * handler's write. Also prints the mask the handler runs with. */
#include "review.h"
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/time.h>
#include <sys/wait.h>
static int pfd[2];
static void on_alrm(int sig) {
  (void)sig;
  sigset_t m;
  sigprocmask(SIG_BLOCK, NULL, &m);
  char msg[128];
  int n = snprintf(msg, sizeof msg, "handler: SIGPIPE blocked=%d\n",
                   sigismember(&m, SIGPIPE));
  write(2, msg, n);
  ssize_t r = write(pfd[1], "x", 1);
  n = snprintf(msg, sizeof msg, "handler: survived the write, r=%zd errno=%d\n",
               r, errno);
  write(2, msg, n);
}
int main(void) {
  int a, as, b, bs;
  tcp_pair(&a, &as);
  tcp_pair_small(&b, &bs, 4096);
  pipe(pfd);
  close(pfd[0]);
  FILE *f = tmpfile();
  static char big[1 << 20];
  fwrite(big, 1, sizeof big, f);
  fflush(f);
  int ffd = fileno(f);
  if (fork() == 0) {
    close(b);
    sleep(2);
    char buf[65536];
    while (read(bs, buf, sizeof buf) > 0)
      ;
    _exit(0);
  }
  close(bs);
  struct sigaction sa = {.sa_handler = on_alrm, .sa_flags = SA_RESTART};
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {.it_value = {0, 300000}};
  setitimer(ITIMER_REAL, &it, NULL);
  write(a, "hello", 5); /* held (coalescing) */
  off_t off = 0;
  ssize_t r = sendfile(b, ffd, &off, sizeof big);
  fprintf(stderr, "main: sendfile returned %zd\n", r);
  return 0;
}
