/* A preloaded library whose constructor does socket I/O, possibly before
 * libnettimeo.so's own constructor has run (LESSONS 1). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

__attribute__((constructor)) static void early_io(void)
{
    int c, s;
    char buf[8] = { 0 };
    pc_pair(AF_INET, &c, &s);
    int ok = write(c, "early", 5) == 5 && read(s, buf, sizeof buf) == 5 &&
             memcmp(buf, "early", 5) == 0;
    dprintf(2, "early_io: %s\n", ok ? "ok" : "FAILED");
    close(c);
    close(s);
}
