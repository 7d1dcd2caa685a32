/* A harmless LD_PRELOAD library of someone else's: `nettimeo run` must
 * keep it and add libnettimeo.so after it. Says so when loaded. */
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void cli_dummy_loaded(void)
{
    static const char msg[] = "cli_dummy_preload: loaded\n";
    (void)!write(2, msg, strlen(msg));
}
