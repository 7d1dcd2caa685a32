/* Minimal local helpers for the audit end-to-end tests: spawn a program
 * under the library (LD_PRELOAD in the child only), wait with a timeout,
 * read the log, pick fields out of JSON lines. tests/lib (nttest) offers
 * the same; this stays small so the audit suite did not have to wait for
 * it, and can be folded into nttest later. */
#ifndef AUDIT_HELPER_H
#define AUDIT_HELPER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Start argv under the library. env: extra "K=V" strings (NULL-ended).
 * stdout/stderr go to the given paths (NULL: /dev/null). Returns the pid. */
pid_t audit_spawn(const char *const argv[], const char *const env[],
                  const char *out_path, const char *err_path);
/* Wait up to timeout_ms; kills the child on timeout. Returns the waitpid
 * status, or -1 on timeout. */
int audit_wait(pid_t pid, int timeout_ms);
/* audit_spawn + audit_wait. */
int audit_run(const char *const argv[], const char *const env[],
              const char *out_path, const char *err_path, int timeout_ms);

/* A fresh directory for one test (removed by audit_cleanup). */
const char *audit_tmpdir(void);
void audit_cleanup(void);
/* audit_tmpdir()/name in a static rotating buffer. */
const char *audit_path(const char *name);
/* Write a config file with the given [global] body; returns its path. */
const char *audit_config(const char *name, const char *global_body);
/* Whole file, NUL-terminated, malloc'ed ("" if missing). */
char *audit_slurp(const char *path);

/* Lines of text that are JSON objects with "event":"NAME" (NULL: any):
 * how many, and the nth (from 0) as a pointer to its start. */
size_t audit_count(const char *text, const char *event);
const char *audit_nth(const char *text, const char *event, size_t nth);
/* Top-level member of a one-line object written by the library (no
 * spaces): strings unescaped only for \" and \\, other values raw; the
 * value ends at the line's end at the latest. */
bool audit_get(const char *line, const char *key, char *out, size_t len);
long long audit_get_num(const char *line, const char *key);
/* Every line of the file is a JSON object (python3 json.loads). Returns
 * the number of lines, or -1 if any line is not valid. */
long audit_validate_jsonl(const char *path);

#endif
