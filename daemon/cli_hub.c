/* alignd pull ORG/NAME[@REVISION] [--include GLOB]... [--models-dir DIR]
 *
 * Downloads a model from the Hugging Face Hub into the Hugging Face cache
 * (daemon/hub.c) and prints the snapshot folder on stdout, as
 * `huggingface-cli download` does. --models-dir DIR puts the cache in DIR
 * instead (the daemon's models_dir: `alignd serve` registers what it finds
 * there as ORG/NAME). A progress bar goes to stderr when it is a terminal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "hub.h"

typedef struct bar {
    int tty;
    double t0;
} bar;

static void human(double b, char out[16]) {
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4) b /= 1000, i++;
    snprintf(out, 16, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static void on_progress(void *ud, const hub_progress *p) {
    bar *b = ud;
    if (!b->tty) return;
    double frac = p->total > 0 ? (double)p->done / (double)p->total : 0;
    if (frac > 1) frac = 1;
    char done[16], total[16], rate[16];
    human((double)p->done, done);
    human((double)p->total, total);
    double dt = al_now() - b->t0;
    human(dt > 0.2 ? (double)p->done / dt : 0, rate);
    char cells[31];
    int k = (int)(frac * 30);
    for (int i = 0; i < 30; i++) cells[i] = i < k ? '#' : ' ';
    cells[30] = 0;
    const char *f = p->file ? p->file : "";
    size_t fl = strlen(f);
    fprintf(stderr, "\r\033[K[%d/%d] %-28.28s %3.0f%% |%s| %s / %s  %s/s", p->files_done, p->files_total,
            fl > 28 ? f + fl - 28 : f, frac * 100, cells, done, total, rate);
    fflush(stderr);
}

int cli_pull(int argc, char **argv) {
    const char *ref = NULL, *models_dir = NULL;
    const char **inc = calloc((size_t)argc + 1, sizeof *inc);
    int n_inc = 0;
    if (!inc) return 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--include") || !strcmp(argv[i], "--models-dir")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "alignd: %s needs a value\n", argv[i]);
                free(inc);
                return 2;
            }
            if (argv[i][2] == 'i') inc[n_inc++] = argv[++i];
            else models_dir = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "alignd: pull: unknown option '%s'\n", argv[i]);
            free(inc);
            return 2;
        } else if (ref) {
            fprintf(stderr, "alignd: pull: one model at a time ('%s' and '%s')\n", ref, argv[i]);
            free(inc);
            return 2;
        } else {
            ref = argv[i];
        }
    }
    if (!ref) {
        fprintf(stderr, "alignd: pull: give a model, ORG/NAME[@REVISION]\n");
        free(inc);
        return 2;
    }
    char repo[AL_HF_REPO_MAX], rev[AL_HF_REV_MAX], e2[AL_ERRLEN];
    if (al_hf_parse_ref(ref, repo, rev, e2)) {
        fprintf(stderr, "alignd: pull: %s\n", e2);
        free(inc);
        return 2;
    }
    bar b = {isatty(2), al_now()};
    hub_opts o = HUB_OPTS_INIT;
    o.cache_dir = models_dir;
    o.include = n_inc ? inc : NULL;
    o.progress = on_progress;
    o.ud = &b;
    hub_result res;
    char err[AL_ERRLEN];
    int rc = hub_pull(repo, rev, &o, &res, err);
    if (b.tty) fputs("\r\033[K", stderr);
    free(inc);
    if (rc) {
        fprintf(stderr, "alignd: pull: %s\n", err);
        return rc == HUB_EINVAL ? 2 : 1;
    }
    char got[16], tot[16];
    human((double)res.downloaded, got);
    human((double)res.bytes, tot);
    if (res.from_cache && !res.files)
        fprintf(stderr, "%s@%s: commit %s, from the cache\n", repo, rev, res.commit);
    else
        fprintf(stderr, "%s@%s: commit %s, %d files, %s (%s downloaded)\n", repo, rev, res.commit, res.files, tot,
                got);
    printf("%s\n", res.dir);
    return 0;
}
