/* tiny_writes_client: load for tiny_writes_server. K connections (one
 * thread each) send a 2-byte request, read the whole response, check it
 * byte for byte, and repeat, until SECONDS have passed or MAX requests
 * have been answered (whichever comes first).
 *
 *   tiny_writes_client PORT K SECONDS MAX [WRITES SIZE]
 *
 * Prints "requests=R seconds=S rps=X p50_us=.. p99_us=.. errors=E".
 * Loopback only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LAT_CAP (1u << 20)

static int port, conns;
static double seconds, t_start;
static long max_req;
static unsigned writes = 2000, size = 8;
static char *expected;
static size_t resp_len;
static long issued, errors;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

struct worker {
    pthread_t t;
    long done;
    float *lat; /* microseconds */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int take_ticket(void)
{
    pthread_mutex_lock(&mu);
    int ok = issued < max_req;
    if (ok)
        issued++;
    pthread_mutex_unlock(&mu);
    return ok;
}

static void error(void)
{
    pthread_mutex_lock(&mu);
    errors++;
    pthread_mutex_unlock(&mu);
}

static void *run(void *arg)
{
    struct worker *w = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        error();
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = { 10, 0 }; /* bounded: a stuck server fails, not hangs */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char *buf = malloc(resp_len);
    while (now_s() - t_start < seconds && take_ticket()) {
        double t0 = now_s();
        if (write(fd, "R\n", 2) != 2) {
            error();
            break;
        }
        size_t got = 0;
        while (got < resp_len) {
            ssize_t r = read(fd, buf + got, resp_len - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got != resp_len || memcmp(buf, expected, resp_len) != 0) {
            error();
            break;
        }
        if (w->done < (long)LAT_CAP)
            w->lat[w->done] = (float)((now_s() - t0) * 1e6);
        w->done++;
    }
    free(buf);
    close(fd);
    return NULL;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: tiny_writes_client PORT K SECONDS MAX "
                        "[WRITES SIZE]\n");
        return 2;
    }
    port = atoi(argv[1]);
    conns = atoi(argv[2]);
    seconds = atof(argv[3]);
    max_req = atol(argv[4]);
    if (argc == 7) {
        writes = (unsigned)atoi(argv[5]);
        size = (unsigned)atoi(argv[6]);
    }
    if (port <= 0 || conns <= 0 || conns > 1024 || seconds <= 0 ||
        max_req <= 0 || !writes || size < 2 || size > 64)
        return 2;
    resp_len = (size_t)writes * size;
    expected = malloc(resp_len);
    for (unsigned i = 0; i < writes; i++) {
        char piece[80];
        snprintf(piece, sizeof piece, "%0*u\n", (int)size - 1, i % 10000000u);
        memcpy(expected + (size_t)i * size, piece, size);
    }
    struct worker *w = calloc((size_t)conns, sizeof *w);
    t_start = now_s();
    for (int i = 0; i < conns; i++) {
        w[i].lat = malloc(LAT_CAP * sizeof(float));
        pthread_create(&w[i].t, NULL, run, &w[i]);
    }
    long total = 0, nlat = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(w[i].t, NULL);
        total += w[i].done;
    }
    double el = now_s() - t_start;
    float *all = malloc(((size_t)total + 1) * sizeof(float));
    for (int i = 0; i < conns; i++) {
        long k = w[i].done < (long)LAT_CAP ? w[i].done : (long)LAT_CAP;
        memcpy(all + nlat, w[i].lat, (size_t)k * sizeof(float));
        nlat += k;
    }
    qsort(all, (size_t)nlat, sizeof *all, cmp_float);
    double p50 = nlat ? all[(long)(0.50 * (nlat - 1))] : 0;
    double p99 = nlat ? all[(long)(0.99 * (nlat - 1))] : 0;
    printf("requests=%ld seconds=%.3f rps=%.1f p50_us=%.1f p99_us=%.1f "
           "errors=%ld\n",
           total, el, el > 0 ? total / el : 0, p50, p99, errors);
    return errors ? 1 : 0;
}
