/* Runs a trainer job given as JSON text: parse, al_train_run with the
 * callbacks (cb and res may be NULL), free. The parse or run error goes to
 * stderr as "job: ..." or "train: ..." (a run stopped or paused by its
 * callbacks is no error) and stays in err. */
#ifndef T_TRAIN_H
#define T_TRAIN_H

#include <stdio.h>
#include <string.h>

#include "train/trainer.h"

/* The same with the field at fault as data (e->field: the API's param). */
static inline int t_train_json_at(const char *json, const char *resume, const al_train_cb *cb,
                                  al_train_result *res, al_error *e) {
    al_job job;
    int rc = al_job_parse_at(&job, json, strlen(json), e);
    if (rc) {
        fprintf(stderr, "job: %s\n", e->msg);
        return rc;
    }
    rc = al_train_run(&job, resume, cb, res, e);
    if (rc && rc != AL_ECANCELED && rc != AL_EPAUSED) fprintf(stderr, "train: %s\n", e->msg);
    al_job_deinit(&job);
    return rc;
}

static inline int t_train_json(const char *json, const char *resume, const al_train_cb *cb,
                               al_train_result *res, char err[AL_ERRLEN]) {
    al_error e = {"", ""};
    int rc = t_train_json_at(json, resume, cb, res, &e);
    if (rc) snprintf(err, AL_ERRLEN, "%s", e.msg);
    return rc;
}

#endif
