/* The shim's view of the configuration: loading at init, NETTIMEO_OPTIONS,
 * strict mode, live reload, and per-connection matching. */
#ifndef NT_SETTINGS_H
#define NT_SETTINGS_H

#include "core/conn.h"

/* At init: find, parse and publish the config (or fail open). */
void nt_settings_load_initial(void);
/* At connection setup: reload if the file changed (at most once a second),
 * then resolve the connection's settings. NULL: audit only. */
const struct nt_settings *nt_settings_match(const struct nt_conn *c);
/* Write a line "nettimeo: MSG\n" to stderr with one write(2). */
void nt_say(const char *msg);

#endif
