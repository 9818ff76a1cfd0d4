/* Runs a trainer job given as JSON text: parse, al_train_run with the
 * callbacks (cb and res may be NULL), free. The parse or run error goes to
 * stderr as "job: ..." or "train: ..." (a run stopped or paused by its
 * callbacks is no error) and stays in err. */
#ifndef T_TRAIN_H
#define T_TRAIN_H

#include <stdio.h>
#include <string.h>

#include "train/trainer.h"

static inline int t_train_json(const char *json, const char *resume, const al_train_cb *cb,
                               al_train_result *res, char err[AL_ERRLEN]) {
    al_job job;
    int rc = al_job_parse(&job, json, strlen(json), err);
    if (rc) {
        fprintf(stderr, "job: %s\n", err);
        return rc;
    }
    al_error e = {"", ""};
    rc = al_train_run(&job, resume, cb, res, &e);
    if (rc) snprintf(err, AL_ERRLEN, "%s", e.msg);
    if (rc && rc != AL_ECANCELED && rc != AL_EPAUSED) fprintf(stderr, "train: %s\n", err);
    al_job_deinit(&job);
    return rc;
}

#endif
