/* dprintf from a handler running on a small alternate signal stack. */
#include "review.h"
#include <signal.h>
static int c;
static void h(int s) {
  int r = dprintf(c, "got signal %d\n", s);
  char m[64];
  int n = snprintf(m, sizeof m, "handler dprintf=%d\n", r);
  write(1, m, n);
}
int main(int argc, char **argv) {
  size_t sz = argc > 1 ? strtoul(argv[1], 0, 0) : 8192;
  int p;
  tcp_pair(&c, &p);
  stack_t ss = {.ss_sp = malloc(sz), .ss_size = sz};
  if (sigaltstack(&ss, 0))
    perror("sigaltstack");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = h;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGUSR1, &sa, 0);
  raise(SIGUSR1);
  char b[64] = {0};
  ssize_t n = read(p, b, 63);
  printf("alt stack %zu: peer got %zd '%s'\n", sz, n, b);
  return 0;
}
