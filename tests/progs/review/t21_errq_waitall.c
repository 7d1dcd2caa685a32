/* A TCP socket with TX timestamps has POLLERR from its error queue: a blocking
 * write and a MSG_WAITALL recv that moved bytes go on (the library took any
 * POLLERR for a reset). */
#include "review.h"
#include <linux/net_tstamp.h>
#include <poll.h>
static int peer;
static void *reader(void *a) {
  (void)a;
  usleep(300000);
  char b[65536];
  long t = 0;
  ssize_t n;
  while ((n = read(peer, b, sizeof b)) > 0)
    t += n;
  fprintf(stderr, "peer read %ld\n", t);
  return 0;
}
int main(int argc, char **argv) {
  int recvmode = argc > 1;
  int c;
  tcp_pair(&c, &peer);
  int v = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_TX_SCHED |
          SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_ID;
  if (setsockopt(c, SOL_SOCKET, SO_TIMESTAMPING, &v, sizeof v))
    perror("SO_TIMESTAMPING");
  write(c, "x", 1);
  char one;
  read(peer, &one, 1);
  usleep(50000);
  struct pollfd p = {c, 0, 0};
  poll(&p, 1, 0);
  printf("revents before=%#x (POLLERR=%#x)\n", p.revents, POLLERR);
  if (!recvmode) {
    pthread_t t;
    pthread_create(&t, 0, reader, 0);
    size_t N = 16 << 20;
    char *buf = calloc(1, N);
    ssize_t w = write(c, buf, N);
    printf("write(%zu) = %zd errno=%d\n", N, w, w < 0 ? errno : 0);
    shutdown(c, SHUT_WR);
    pthread_join(t, 0);
  } else {
    /* peer sends 100, then 100 later; program recv WAITALL 200 */
    char b[200] = {0};
    write(peer, b, 100);
    if (!fork()) {
      usleep(300000);
      write(peer, b, 100);
      _exit(0);
    }
    ssize_t r = recv(c, b, 200, MSG_WAITALL);
    printf("recv WAITALL(200) = %zd\n", r);
  }
  return 0;
}
