/* Reading files: only regular files, never blocking, bounded, with the
 * reason on line 0 when a file cannot be used. */
#define _GNU_SOURCE
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(files, .timeout = 30);

static char dir[64];

static void make_dir(void)
{
    strcpy(dir, "/tmp/nt-config-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* Parse path; expect exactly one message, on line 0, equal to want. */
static void expect_refused(const char *path, const char *want)
{
    struct diags d = { 0 };
    int fds_before = open("/dev/null", O_RDONLY);
    close(fds_before);

    cr_expect_null(nt_config_parse_file(path, diags_collect, &d));
    cr_assert_eq(d.n, 1, "%s: %d messages", path, d.n);
    cr_expect_str_eq(d.d[0].file, path);
    cr_expect_eq(d.d[0].line, 0);
    cr_expect_str_eq(d.d[0].msg, want);

    int fds_after = open("/dev/null", O_RDONLY);
    close(fds_after);
    cr_expect_eq(fds_after, fds_before, "no fd leaked");
}

Test(files, missing_file, .init = make_dir, .fini = remove_dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/nope.conf", dir);
    expect_refused(path, "cannot open: No such file or directory");
}

Test(files, directory, .init = make_dir, .fini = remove_dir)
{
    expect_refused(dir, "is a directory, not a regular file");
}

/* A FIFO with no writer would block a plain open() forever. */
Test(files, fifo_does_not_block, .init = make_dir, .fini = remove_dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/fifo.conf", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    expect_refused(path, "is a FIFO, not a regular file");
}

Test(files, device)
{
    expect_refused("/dev/null", "is a character device, not a regular file");
}

static void write_file(const char *path, size_t size, char fill)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (size_t i = 0; i < size; i++)
        fputc(i % 64 == 63 ? '\n' : fill, f);
    cr_assert_eq(fclose(f), 0);
}

Test(files, too_large, .init = make_dir, .fini = remove_dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/big.conf", dir);
    write_file(path, (1u << 20) + 1, '#');
    expect_refused(path, "file too large (1048577 bytes, at most 1048576)");
}

Test(files, largest_allowed, .init = make_dir, .fini = remove_dir)
{
    char path[128];
    struct diags d = { 0 };
    snprintf(path, sizeof path, "%s/ok.conf", dir);
    write_file(path, 1u << 20, '#');  /* a megabyte of comments */
    struct nt_config *cfg = nt_config_parse_file(path, diags_collect, &d);
    cr_expect_not_null(cfg);
    cr_expect_eq(d.n, 0);
    nt_config_free(cfg);
}

Test(files, symlink_to_a_good_file, .init = make_dir, .fini = remove_dir)
{
    char target[1024], link[128];
    snprintf(link, sizeof link, "%s/link.conf", dir);
    fixture_path("good/match.conf", target, sizeof target);
    cr_assert_eq(symlink(target, link), 0);
    struct nt_config *cfg = nt_config_parse_file(link, NULL, NULL);
    cr_expect_not_null(cfg);
    nt_config_free(cfg);
}

Test(files, errno_preserved)
{
    errno = EXDEV;
    nt_config_free(nt_config_parse_file("/nonexistent/x.conf", NULL, NULL));
    cr_expect_eq(errno, EXDEV);
}
