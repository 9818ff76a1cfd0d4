/* The built-in tasks (lib/tasks): rows are reproducible, answers right,
 * wrong answers wrong, and the train and test splits never share a prompt,
 * so a model measured on "test" was never trained on what it is asked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "tasks/tasks.h"
#include "train/job.h"

static void test_rows(void) {
    al_task_row a, b;
    T_OK(al_task_row_get("addition", AL_SPLIT_ALL, 7, 3, &a));
    T_OK(al_task_row_get("addition", AL_SPLIT_ALL, 7, 3, &b));
    T_STR_EQ(a.prompt, b.prompt);
    T_STR_EQ(a.answer, b.answer);
    T_EQ_INT(al_task_row_get("nope", AL_SPLIT_ALL, 1, 0, &a), AL_ENOENT);
    for (const al_task_info *t = al_tasks(); t->name; t++)
        for (int i = 0; i < 200; i++) {
            T_OK(al_task_row_get(t->name, AL_SPLIT_ALL, 1, (uint64_t)i, &a));
            T_REPORT_(strcmp(a.answer, a.wrong) != 0, "%s row %d: wrong answer %s equals the answer", t->name, i,
                      a.wrong);
            T_REPORT_(al_task_correct(&a, a.answer) && !al_task_correct(&a, a.wrong), "%s row %d", t->name, i);
        }
    /* the additions' answers are the sums */
    for (int i = 0; i < 100; i++) {
        T_OK(al_task_row_get("addition2", AL_SPLIT_TRAIN, 5, (uint64_t)i, &a));
        unsigned x, y;
        T_TRUE(sscanf(a.prompt, "%u+%u=", &x, &y) == 2 && x < 100 && y < 100);
        T_EQ_INT(atoi(a.answer), (int)(x + y));
    }
    T_TRUE(al_task_correct(&a, "") == 0);
    char padded[sizeof a.answer + 8];
    snprintf(padded, sizeof padded, "%s \n", a.answer);
    T_TRUE(al_task_correct(&a, padded)); /* trailing whitespace is trimmed */
}

/* Every prompt of every test row is in the test split, every train row's in
 * the train split; the test split is about a fifth of the distribution;
 * rows of a split are the whole distribution's rows that fall in it. */
static void test_splits(void) {
    for (const al_task_info *ti = al_tasks(); ti->name; ti++) {
        const char *t = ti->name;
        int n_test = 0, n = 4000;
        for (int i = 0; i < n; i++) {
            al_task_row all, tr, te;
            T_OK(al_task_row_get(t, AL_SPLIT_ALL, 11, (uint64_t)i, &all));
            T_OK(al_task_row_get(t, AL_SPLIT_TRAIN, 11, (uint64_t)i, &tr));
            T_OK(al_task_row_get(t, AL_SPLIT_TEST, 11, (uint64_t)i, &te));
            T_EQ_INT(al_task_prompt_split(tr.prompt), AL_SPLIT_TRAIN);
            T_EQ_INT(al_task_prompt_split(te.prompt), AL_SPLIT_TEST);
            int in_test = al_task_prompt_split(all.prompt) == AL_SPLIT_TEST;
            n_test += in_test;
            /* a row already in its split is kept as it is */
            if (in_test) T_STR_EQ(te.prompt, all.prompt);
            else T_STR_EQ(tr.prompt, all.prompt);
        }
        double share = (double)n_test / n;
        printf("%s: test share %.3f\n", t, share);
        T_REPORT_(share > 0.12 && share < 0.28, "%s: test split holds %.3f of the rows", t, share);
    }
    /* no addition2 prompt of 20000 training draws is a test prompt of 2000 */
    static char test_prompts[2000][AL_TASK_TEXT];
    for (int i = 0; i < 2000; i++) {
        al_task_row r;
        T_OK(al_task_row_get("addition2", AL_SPLIT_TEST, 4242, (uint64_t)i, &r));
        memcpy(test_prompts[i], r.prompt, AL_TASK_TEXT);
    }
    int shared = 0;
    for (int i = 0; i < 20000; i++) {
        al_task_row r;
        T_OK(al_task_row_get("addition2", AL_SPLIT_TRAIN, (uint64_t)(i % 7), (uint64_t)i, &r));
        for (int k = 0; k < 2000; k++) shared += !strcmp(r.prompt, test_prompts[k]);
    }
    T_EQ_INT(shared, 0);
    T_EQ_INT(al_task_split_parse("test"), AL_SPLIT_TEST);
    T_EQ_INT(al_task_split_parse("train"), AL_SPLIT_TRAIN);
    T_EQ_INT(al_task_split_parse("all"), AL_SPLIT_ALL);
    T_EQ_INT(al_task_split_parse("validation"), -1);
    T_STR_EQ(al_task_split_name(AL_SPLIT_TEST), "test");
}

/* A job's task split: "train" for training methods, "test" for evaluate
 * and eval_tasks, as given otherwise; a bad one names the field. */
static void test_job_split(void) {
    char err[AL_ERRLEN];
    al_job j;
    const char *sft = "{\"method\":\"sft\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},"
                      "\"eval_tasks\":[{\"name\":\"addition\",\"rows\":10}]}";
    T_OK(al_job_parse(&j, sft, strlen(sft), err));
    T_EQ_INT(j.task_split, AL_SPLIT_TRAIN);
    T_EQ_INT(j.eval_tasks[0].split, AL_SPLIT_TEST);
    json_t *t = json_object_get(j.resolved, "task");
    T_STR_EQ(json_string_value(json_object_get(t, "split")), "train");
    t = json_array_get(json_object_get(j.resolved, "eval_tasks"), 0);
    T_STR_EQ(json_string_value(json_object_get(t, "split")), "test");
    al_job_deinit(&j);
    const char *ev = "{\"method\":\"evaluate\",\"model\":\"m\",\"output_dir\":\"o\","
                     "\"task\":{\"name\":\"addition2\",\"rows\":5}}";
    T_OK(al_job_parse(&j, ev, strlen(ev), err));
    T_EQ_INT(j.task_split, AL_SPLIT_TEST);
    al_job_deinit(&j);
    const char *given = "{\"method\":\"evaluate\",\"model\":\"m\",\"output_dir\":\"o\","
                        "\"task\":{\"name\":\"addition2\",\"split\":\"all\"}}";
    T_OK(al_job_parse(&j, given, strlen(given), err));
    T_EQ_INT(j.task_split, AL_SPLIT_ALL);
    al_job_deinit(&j);
    const char *bad = "{\"method\":\"sft\",\"model\":\"m\",\"task\":{\"name\":\"addition2\",\"split\":\"dev\"}}";
    T_EQ_INT(al_job_parse(&j, bad, strlen(bad), err), AL_EINVAL);
    T_STR_EQ(err, "task.split: must be \"train\", \"test\" or \"all\"");
    const char *bad2 = "{\"method\":\"sft\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},"
                       "\"eval_tasks\":[{\"name\":\"addition2\",\"split\":1}]}";
    T_EQ_INT(al_job_parse(&j, bad2, strlen(bad2), err), AL_EINVAL);
    T_STR_EQ(err, "eval_tasks[0].split: must be \"train\", \"test\" or \"all\"");
}

/* "mistakes": "one_digit": the same rows, the wrong answer the right sum
 * with exactly one digit changed (same length, no leading zero); the other
 * kinds occur under "any"; bad values and tasks name the field. */
static void test_mistakes(void) {
    int kinds_other = 0;
    for (int i = 0; i < 2000; i++) {
        al_task_row any, one;
        T_OK(al_task_row_get_with("addition2", AL_SPLIT_TRAIN, 101, (uint64_t)i, AL_MISTAKES_ANY, &any));
        T_OK(al_task_row_get_with("addition2", AL_SPLIT_TRAIN, 101, (uint64_t)i, AL_MISTAKES_ONE_DIGIT, &one));
        T_STR_EQ(one.prompt, any.prompt);
        T_STR_EQ(one.answer, any.answer);
        size_t n = strlen(one.answer), diff = 0;
        T_EQ_INT(strlen(one.wrong), n);
        for (size_t k = 0; k < n && k < strlen(one.wrong); k++) diff += one.wrong[k] != one.answer[k];
        T_REPORT_(diff == 1 && one.wrong[0] >= '0' && one.wrong[0] <= '9' && (n == 1 || one.wrong[0] != '0'),
                  "row %d: %s -> %s is not a one-digit change", i, one.answer, one.wrong);
        size_t da = 0;
        for (size_t k = 0; k < n && strlen(any.wrong) == n; k++) da += any.wrong[k] != any.answer[k];
        kinds_other += strlen(any.wrong) != n || da != 1;
    }
    T_TRUE(kinds_other > 600); /* 3 kinds in 5 under "any" */
    al_task_row r;
    T_EQ_INT(al_task_row_get_with("sorting", AL_SPLIT_ALL, 1, 0, AL_MISTAKES_ONE_DIGIT, &r), AL_EINVAL);
    T_EQ_INT(al_task_mistakes_parse("one_digit"), AL_MISTAKES_ONE_DIGIT);
    T_EQ_INT(al_task_mistakes_parse("none"), -1);
    char err[AL_ERRLEN];
    al_job j;
    const char *ok = "{\"method\":\"reward_model\",\"model\":\"m\","
                     "\"task\":{\"name\":\"addition\",\"mistakes\":\"one_digit\"}}";
    T_OK(al_job_parse(&j, ok, strlen(ok), err));
    T_EQ_INT(j.task_mistakes, AL_MISTAKES_ONE_DIGIT);
    al_job_deinit(&j);
    static const char *const bad[][2] = {
        {"{\"method\":\"reward_model\",\"model\":\"m\",\"task\":{\"name\":\"addition\",\"mistakes\":\"few\"}}",
         "task.mistakes: must be \"any\" or \"one_digit\""},
        {"{\"method\":\"dpo\",\"model\":\"m\",\"task\":{\"name\":\"sorting\",\"mistakes\":\"one_digit\"}}",
         "task.mistakes: \"one_digit\" is for the additions (addition, addition2), not sorting"},
        {"{\"method\":\"sft\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},"
         "\"eval_tasks\":[{\"name\":\"addition2\",\"mistakes\":\"any\"}]}",
         "eval_tasks[0].mistakes: is for the job's task (its training pairs), not eval_tasks[0]"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        T_EQ_INT(al_job_parse(&j, bad[k][0], strlen(bad[k][0]), err), AL_EINVAL);
        T_STR_EQ(err, bad[k][1]);
    }
}

int main(void) {
    test_rows();
    test_splits();
    test_job_split();
    test_mistakes();
    return t_done();
}
