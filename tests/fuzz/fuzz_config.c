/* libFuzzer target: config.json (lib/model/config.h, al_config_parse) for
 * every family the loader knows, rope_scaling / rope_parameters included.
 *
 * The input is the file. A parse must succeed or fail with a message; a
 * parsed config that validates must save (al_config_save, to a scratch
 * folder in the working directory, removed at exit) and parse back, since
 * the loader promises parse(save(cfg)) == cfg. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];

static void cleanup(void) {
    char p[128];
    snprintf(p, sizeof p, "%s/config.json", g_dir);
    unlink(p);
    rmdir(g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[AL_ERRLEN];
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "fuzz_config_%d", (int)getpid());
        if (al_mkdir_p(g_dir, err) != AL_OK) abort();
        atexit(cleanup);
    }
    /* an exact-size copy: a read past the end is ASan's to see */
    char *buf = malloc(size ? size : 1);
    if (!buf) abort();
    memcpy(buf, data, size);
    al_model_config c;
    err[0] = 0;
    int rc = al_config_parse(&c, buf, size, err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "rc %d: %s\n", rc, rc ? err : "");
    free(buf);
    if (rc != AL_OK) {
        if (!err[0]) abort(); /* every refusal names its reason */
        return 0;
    }
    if (al_config_validate(&c, err) != AL_OK) return 0;
    if (al_config_save(&c, g_dir, err) != AL_OK) abort();
    al_model_config back;
    if (al_config_load(&back, g_dir, err) != AL_OK) {
        fprintf(stderr, "saved config does not load back: %s\n", err);
        abort();
    }
    if (al_config_validate(&back, err) != AL_OK) {
        fprintf(stderr, "saved config does not validate: %s\n", err);
        abort();
    }
    return 0;
}
