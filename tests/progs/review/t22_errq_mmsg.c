/* Error-queue POLLERR does not cut a recvmmsg after its first message. */
#include "review.h"
#include <linux/net_tstamp.h>
#include <poll.h>
int main(void) {
  int c, peer;
  tcp_pair(&c, &peer);
  int v = SOF_TIMESTAMPING_TX_SCHED | SOF_TIMESTAMPING_SOFTWARE |
          SOF_TIMESTAMPING_OPT_ID;
  if (setsockopt(c, SOL_SOCKET, SO_TIMESTAMPING, &v, sizeof v))
    perror("SO_TIMESTAMPING");
  write(c, "x", 1);
  char one;
  read(peer, &one, 1);
  write(peer, "0123456789", 10);
  if (!fork()) {
    usleep(300000);
    write(peer, "abcdefghij", 10);
    _exit(0);
  }
  usleep(50000);
  struct pollfd p = {c, 0, 0};
  poll(&p, 1, 0);
  printf("revents=%#x\n", p.revents);
  char b1[10], b2[10];
  struct iovec i1 = {b1, 10}, i2 = {b2, 10};
  struct mmsghdr m[2];
  memset(m, 0, sizeof m);
  m[0].msg_hdr.msg_iov = &i1;
  m[0].msg_hdr.msg_iovlen = 1;
  m[1].msg_hdr.msg_iov = &i2;
  m[1].msg_hdr.msg_iovlen = 1;
  int r = recvmmsg(c, m, 2, 0, NULL);
  printf("recvmmsg = %d (lens %u %u)\n", r, m[0].msg_len, m[1].msg_len);
  return 0;
}
