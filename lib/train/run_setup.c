/* The run skeleton's set-up (run.h, "set-up"): the models every training
 * step kind opens the same way — the policy with its tokenizer and chat
 * template, and the frozen reference a KL or preference term compares it
 * with. The ranks, the reductions and AdamW are run.c's (al_run_world,
 * al_run_dist_start). */
#include "run.h"

int al_run_open_policy(al_run *run, al_lm *lm, int extra_flags, int name_field) {
    const al_job *job = run->job;
    al_lm_cfg lc = {.open_flags = extra_flags | al_job_open_flags(job),
                    .lora = job->use_lora ? &job->lora : NULL,
                    .seed = job->hp.seed,
                    .chat_template = job->chat_template,
                    .model_field = name_field ? "model" : NULL};
    int rc = al_lm_open_at(lm, job->model, &lc, &run->err);
    if (rc) return rc;
    run->m = lm->m;
    if (job->hp.save_dtype) al_model_set_save_dtype(lm->m, (al_dtype)job->hp.save_dtype);
    return AL_OK;
}

int al_run_open_ref(al_run *run, int copy_start, int name_field, al_model **ref, int *adapters_off) {
    const al_job *job = run->job;
    const char *dir = job->ref_model[0] ? job->ref_model : job->model;
    *ref = NULL;
    *adapters_off = 0;
    if (!job->ref_model[0] && job->use_lora) {
        *adapters_off = 1;
        return AL_OK;
    }
    if (!job->ref_model[0] && !copy_start) return AL_OK;
    char e2[AL_ERRLEN];
    int rc = al_model_open_ex(ref, dir, NULL, AL_OPEN_FROZEN | al_job_open_flags(job), 0, e2);
    if (rc && name_field) return AL_FAIL(&run->err, rc, "%s", "%s", job->ref_model[0] ? "ref_model" : "model", e2);
    if (rc) return al_err(run->err.msg, rc, "%s", e2);
    return AL_OK;
}
