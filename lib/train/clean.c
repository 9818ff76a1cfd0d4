/* The clean_data job: a file through the hygiene filters into a new file
 * (see trainer.h, al_clean_run; the filters are lib/text/hygiene.h, the
 * reading and writing lib/text/dataset.h's al_dataset_clean_file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io.h"
#include "../text/dataset.h"
#include "run.h"
#include "trainer.h"

static long jget(const json_t *o, const char *a, const char *b) {
    const json_t *x = json_object_get(o, a);
    return (long)json_integer_value(b ? json_object_get(x, b) : x);
}

/* Its errors name training_file when the file cannot be read or used, no
 * field when the output cannot be written. */
static int clean_run(const al_job *job, const al_train_cb *cb, al_train_result *res, al_error *e) {
    char *err = e->msg;
    e->field[0] = 0;
    al_train_result r;
    memset(&r, 0, sizeof r);
    r.total_steps = 1;
    if (cb && cb->begin) cb->begin(cb->ud, 1, 0);
    int rc = al_mkdir_p(job->output_dir, err);
    /* <output_dir>/<training file's name without extension>.clean.jsonl */
    const char *base = strrchr(job->training_file, '/') ? strrchr(job->training_file, '/') + 1 : job->training_file;
    size_t bl = strcspn(base, ".");
    char out[AL_PATH_MAX + 64], rpath[AL_PATH_MAX + 64];
    snprintf(out, sizeof out, "%s/%.*s.clean.jsonl", job->output_dir, (int)(bl ? bl : 4), bl ? base : "data");
    snprintf(rpath, sizeof rpath, "%s/report.json", job->output_dir);
    json_t *rep = NULL;
    int kept = 0;
    al_data_opts o = {.hygiene = &job->hygiene, .dataset_info = al_job_file_dataset_info(job, job->training_file)};
    if (!rc) rc = al_dataset_clean_file(job->training_file, "training_file", out, &o, &rep, &kept, e);
    if (!rc) {
        char *txt = json_dumps(rep, JSON_INDENT(2));
        rc = txt ? al_file_write_atomic(rpath, txt, strlen(txt), err) : al_err(err, AL_ENOMEM, "out of memory");
        free(txt);
    }
    if (rc) {
        json_decref(rep);
        if (res) *res = r;
        return rc;
    }
    const json_t *hy = json_object_get(rep, "hygiene");
    al_run_event(cb, AL_LOG_INFO, "clean_data: %ld rows read (%ld bad, %ld exact duplicates), %d written to %s; report in %s",
        jget(rep, "rows", NULL), (long)json_array_size(json_object_get(rep, "errors")) + jget(rep, "errors_omitted", NULL),
        jget(rep, "duplicates", NULL), kept, out, rpath);
    if (json_object_get(hy, "near_duplicates"))
        al_run_event(cb, AL_LOG_INFO, "near-duplicates: %ld dropped (Jaccard >= %.2f of word %ld-grams, MinHash %ld "
            "permutations in %ld bands)", jget(hy, "near_duplicates", "dropped"),
            json_number_value(json_object_get(json_object_get(hy, "near_duplicates"), "threshold")),
            jget(hy, "near_duplicates", "ngram"), jget(hy, "near_duplicates", "num_perm"),
            jget(hy, "near_duplicates", "bands"));
    if (json_object_get(hy, "decontamination"))
        al_run_event(cb, AL_LOG_INFO, "contamination: %ld dropped (%ld-grams, %s; %ld evaluation rows, %ld too short to match)",
            jget(hy, "decontamination", "dropped"), jget(hy, "decontamination", "ngram"),
            json_string_value(json_object_get(json_object_get(hy, "decontamination"), "rule")),
            jget(hy, "decontamination", "eval_rows"), jget(hy, "decontamination", "eval_rows_too_short"));
    if (json_object_get(hy, "length"))
        al_run_event(cb, AL_LOG_INFO, "length: %ld too short, %ld too long", jget(hy, "length", "too_short"),
            jget(hy, "length", "too_long"));
    if (json_object_get(hy, "language"))
        al_run_event(cb, AL_LOG_INFO, "language: %ld dropped, %ld undetermined (kept)", jget(hy, "language", "dropped"),
            jget(hy, "language", "undetermined"));
    const json_t *ws = json_object_get(rep, "warnings");
    for (size_t i = 0; i < json_array_size(ws) && i < 20; i++)
        al_run_event(cb, AL_LOG_INFO, "%s (%s)", json_string_value(json_object_get(json_array_get(ws, i), "message")),
            json_string_value(json_object_get(json_array_get(ws, i), "code")));
    if (cb && cb->log) {
        al_metric m[10];
        int n = 0;
#define PUT(name_, v_) do { snprintf(m[n].name, sizeof m[n].name, "%s", name_); m[n++].value = (double)(v_); } while (0)
        PUT("rows", jget(rep, "rows", NULL));
        PUT("rows_kept", kept);
        PUT("errors", (long)json_array_size(json_object_get(rep, "errors")) + jget(rep, "errors_omitted", NULL));
        PUT("duplicates", jget(rep, "duplicates", NULL));
        PUT("hygiene/near_duplicates", jget(hy, "near_duplicates", "dropped"));
        PUT("hygiene/contaminated", jget(hy, "decontamination", "dropped"));
        PUT("hygiene/too_short", jget(hy, "length", "too_short"));
        PUT("hygiene/too_long", jget(hy, "length", "too_long"));
        PUT("hygiene/language", jget(hy, "language", "dropped"));
#undef PUT
        cb->log(cb->ud, 1, 1.0, m, n);
    }
    json_decref(rep);
    r.steps = 1;
    r.n_output_files = 1;
    snprintf(r.output_files[0].path, sizeof r.output_files[0].path, "%s", out);
    snprintf(r.output_files[0].purpose, sizeof r.output_files[0].purpose, "fine-tune");
    if (cb && cb->checkpoint) cb->checkpoint(cb->ud, 1, job->output_dir);
    if (res) *res = r;
    return AL_OK;
}

int al_clean_run(const al_job *job, const al_train_cb *cb, al_train_result *res, al_error *err) {
    al_error e = {"", ""};
    int rc = clean_run(job, cb, res, &e);
    return rc ? al_fail_as(err, rc, e.field, e.msg) : AL_OK;
}
