/* api/ids.h: every kind of public id formatted and parsed back, the
 * malformed ones refused (wrong prefix, sign, trailing text, zero, overflow),
 * job references with and without a checkpoint step, and the model names a
 * user may choose. */
#include <stdint.h>

#include "api/ids.h"
#include "t.h"

static void test_format(void) {
    T_STR_EQ(api_id(API_ID_FILE, 3).s, "file-3");
    T_STR_EQ(api_id(API_ID_JOB, 12).s, "ftjob-12");
    T_STR_EQ(api_id(API_ID_EVENT, 7).s, "ftevent-7");
    T_STR_EQ(api_id(API_ID_CHECKPOINT, 2).s, "ckpt-2");
    T_STR_EQ(api_id(API_ID_MODEL_EVENT, 5).s, "mdlevent-5");
    T_STR_EQ(api_id(API_ID_JOB, INT64_MAX).s, "ftjob-9223372036854775807");
    T_STR_EQ(api_checkpoint_name(12, 300).s, "ftjob-12:300");
    T_STR_EQ(api_checkpoint_name(INT64_MAX, 0).s, "ftjob-9223372036854775807:0");
}

static void test_parse(void) {
    T_EQ_INT(api_id_parse(API_ID_JOB, "ftjob-12"), 12);
    T_EQ_INT(api_id_parse(API_ID_FILE, "file-1"), 1);
    T_EQ_INT(api_id_parse(API_ID_EVENT, "ftevent-40"), 40);
    T_EQ_INT(api_id_parse(API_ID_CHECKPOINT, "ckpt-9"), 9);
    T_EQ_INT(api_id_parse(API_ID_MODEL_EVENT, "mdlevent-2"), 2);
    T_EQ_INT(api_id_parse(API_ID_JOB, "ftjob-007"), 7); /* leading zeros, as before */
    T_EQ_INT(api_id_parse(API_ID_JOB, "ftjob-9223372036854775807"), INT64_MAX);
    /* every id formatted parses back */
    for (int k = API_ID_FILE; k <= API_ID_MODEL_EVENT; k++)
        T_EQ_INT(api_id_parse((api_id_kind)k, api_id((api_id_kind)k, 123456789).s), 123456789);
    static const char *const bad[] = {"file-12", "ftjob-", "ftjob-0", "ftjob--1", "ftjob-+1", "ftjob- 1",
                                      "ftjob-1x", "ftjob-1:2", "ftjob-9223372036854775808", "FTJOB-1",
                                      "xftjob-1", "", NULL};
    for (int i = 0; bad[i]; i++) T_EQ_INT(api_id_parse(API_ID_JOB, bad[i]), 0);
    T_EQ_INT(api_id_parse(API_ID_JOB, NULL), 0);
    T_EQ_INT(api_id_parse(API_ID_FILE, "ftjob-3"), 0);
}

static void test_job_refs(void) {
    int64_t job = 0;
    long step = 0;
    T_EQ_INT(api_job_ref_parse("ftjob-4", &job, &step), 1);
    T_EQ_INT(job, 4);
    T_EQ_INT(step, -1);
    T_EQ_INT(api_job_ref_parse("ftjob-4:300", &job, &step), 1);
    T_EQ_INT(job, 4);
    T_EQ_INT(step, 300);
    T_EQ_INT(api_job_ref_parse("ftjob-4:0", &job, &step), 1);
    T_EQ_INT(step, 0);
    /* not a job reference at all: some other model name */
    T_EQ_INT(api_job_ref_parse("tiny", &job, &step), 0);
    T_EQ_INT(api_job_ref_parse("ft:tiny:ftjob-4", &job, &step), 0);
    T_EQ_INT(api_job_ref_parse(NULL, &job, &step), 0);
    /* a bad step, then a bad job number; the outputs stay untouched */
    job = 77;
    T_EQ_INT(api_job_ref_parse("ftjob-4:", &job, &step), -1);
    T_EQ_INT(api_job_ref_parse("ftjob-4:-1", &job, &step), -1);
    T_EQ_INT(api_job_ref_parse("ftjob-4:1x", &job, &step), -1);
    T_EQ_INT(api_job_ref_parse("ftjob-x:y", &job, &step), -1);
    T_EQ_INT(api_job_ref_parse("ftjob-x", &job, &step), -2);
    T_EQ_INT(api_job_ref_parse("ftjob-x:3", &job, &step), -2);
    T_EQ_INT(api_job_ref_parse("ftjob-0:3", &job, &step), -2);
    T_EQ_INT(job, 77);
}

static void test_model_names(void) {
    static const char *const ok[] = {"tiny", "Qwen2.5-0.5B", "a_b-c.d", "x", NULL};
    for (int i = 0; ok[i]; i++) T_TRUE(api_model_name_ok(ok[i]));
    static const char *const bad[] = {"", ".hidden", "-x", "ftjob-1", "ftjob-", "a/b", "a b", "é", "a:b",
                                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL};
    for (int i = 0; bad[i]; i++) T_TRUE(!api_model_name_ok(bad[i]));
    /* 64 characters is the longest */
    T_TRUE(api_model_name_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

int main(void) {
    test_format();
    test_parse();
    test_job_refs();
    test_model_names();
    return t_done();
}
