/* Job descriptions: TRL's defaults filled in, "auto" accepted, and every bad
 * value rejected with the field's path as data (al_error's field) and at the
 * start of the message. */
#include <jansson.h>
#include <string.h>

#include "compute/ops.h"
#include "model/safetensors.h"
#include "t.h"
#include "train/job.h"

static al_job g_job;
static char g_err[AL_ERRLEN];
static al_error g_e;
static int g_text; /* not JSON: al_job_parse's message, no field */

static int parse(const char *json) {
    g_err[0] = 0;
    memset(&g_e, 0, sizeof g_e);
    json_t *o = json_loads(json, JSON_REJECT_DUPLICATES, NULL);
    g_text = o == NULL;
    int rc = o ? al_job_from_json(&g_job, o, &g_e) : al_job_parse(&g_job, json, strlen(json), g_err);
    json_decref(o);
    if (o) snprintf(g_err, sizeof g_err, "%s", g_e.msg);
    if (rc == AL_OK) al_job_deinit(&g_job);
    return rc;
}

/* Refused with a message starting with msg, and the field at fault (data)
 * the path the message starts with. */
#define T_REJECTS(json, msg)                                                   \
    do {                                                                       \
        T_EQ_INT(parse(json), AL_EINVAL);                                      \
        T_REPORT_(strncmp(g_err, msg, strlen(msg)) == 0, "error \"%s\" starts with \"%s\"", g_err, msg); \
        size_t fl_ = strlen(g_e.field);                                        \
        T_REPORT_(g_text || (fl_ > 0 && !strncmp(g_err, g_e.field, fl_) && g_err[fl_] == ':'),       \
                  "field \"%s\" of \"%s\"", g_e.field, g_err);                \
    } while (0)

/* The field is data, not the message's first word: an unknown key is named
 * whole, spaces and colons included; an objective's field gets its object. */
static void test_error_fields(void) {
    T_EQ_INT(parse("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"weird key: x\":1}"), AL_EINVAL);
    T_STR_EQ(g_e.field, "weird key: x");
    T_STR_EQ(g_e.msg, "weird key: x: unknown field");
    T_EQ_INT(parse("{\"method\":\"dpo\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":"
                   "{\"loss_type\":\"xyz\"}}"), AL_EINVAL);
    T_STR_EQ(g_e.field, "hyperparameters.loss_type");
    T_EQ_INT(parse("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition\"},\"reward\":"
                   "{\"verifiable\":{\"grader\":{\"extract\":{\"regex\":\"(a\"}}}}}"), AL_EINVAL);
    T_STR_EQ(g_e.field, "reward.verifiable.grader.extract.regex");
}

/* reward.verifiable.grader, reward.format and reward.http (lib/train/job.h). */
static void test_reward_sources(void) {
#define GRPO "{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition\"},\"reward\":"
    al_job j;
    char err[AL_ERRLEN];
    const char *full = GRPO "{\"verifiable\":{\"weight\":2,\"grader\":{\"preset\":\"hash\",\"tolerance\":0.01}},"
                       "\"format\":{\"regex\":\"^<think>.*?</think>\",\"weight\":0.2,\"match\":\"full\"},"
                       "\"http\":{\"url\":\"http://127.0.0.1:9/r\",\"weight\":0.5,\"timeout_ms\":500,\"batch\":4,"
                       "\"retries\":1}}}";
    T_OK(al_job_parse(&j, full, strlen(full), err));
    T_NEAR(j.reward.verifiable, 2, 0);
    T_EQ_INT(j.reward.grader.extract, AL_EXTRACT_HASH);
    T_EQ_INT(j.reward.grader.compare, AL_COMPARE_NUMERIC);
    T_NEAR(j.reward.grader.tolerance, 0.01, 0);
    T_EQ_INT(j.reward.grader_given, 1);
    T_STR_EQ(j.reward.format_regex, "^<think>.*?</think>");
    T_NEAR(j.reward.format_weight, 0.2, 1e-7);
    T_EQ_INT(j.reward.format_mode, AL_FORMAT_FULL);
    T_STR_EQ(j.reward.http_url, "http://127.0.0.1:9/r");
    T_NEAR(j.reward.http_weight, 0.5, 0);
    T_EQ_INT(j.reward.http_timeout_ms, 500);
    T_EQ_INT(j.reward.http_batch, 4);
    T_EQ_INT(j.reward.http_retries, 1);
    al_job_deinit(&j);
    /* defaults: the whole completion exactly; format from the start, weight 1;
     * http weight 1, 30 s, 64 a request, 3 retries */
    const char *dflt = GRPO "{\"verifiable\":1,\"format\":{\"regex\":\"x\"},\"http\":{\"url\":\"https://v.example/r\"}}}";
    T_OK(al_job_parse(&j, dflt, strlen(dflt), err));
    T_EQ_INT(j.reward.grader.extract, AL_EXTRACT_NONE);
    T_EQ_INT(j.reward.grader.compare, AL_COMPARE_EXACT);
    T_EQ_INT(j.reward.grader_given, 0);
    T_NEAR(j.reward.format_weight, 1, 0);
    T_EQ_INT(j.reward.format_mode, AL_FORMAT_START);
    T_NEAR(j.reward.http_weight, 1, 0);
    T_EQ_INT(j.reward.http_timeout_ms, 30000);
    T_EQ_INT(j.reward.http_batch, 64);
    T_EQ_INT(j.reward.http_retries, 3);
    al_job_deinit(&j);
    /* a format or http source alone is a reward */
    T_EQ_INT(parse(GRPO "{\"format\":{\"regex\":\"<answer>\"}}}"), AL_OK);
    T_EQ_INT(parse(GRPO "{\"http\":{\"url\":\"http://h:1/\"}}}"), AL_OK);
    T_REJECTS(GRPO "{\"verifiable\":{\"grader\":\"fuzzy\"}}}",
              "reward.verifiable.grader: must be a grader object or one of exact");
    T_REJECTS(GRPO "{\"verifiable\":{\"grader\":{\"compare\":1}}}}",
              "reward.verifiable.grader.compare: must be \"exact\", \"casefold\", \"numeric\" or \"auto\"");
    T_REJECTS(GRPO "{\"verifiable\":{\"grader\":{\"extract\":{\"regex\":\"a(\"}}}}}",
              "reward.verifiable.grader.extract.regex: not a valid pattern at offset 2");
    T_REJECTS(GRPO "{\"verifiable\":{\"grader\":{\"extract\":{\"regex\":\"answer\"}}}}}",
              "reward.verifiable.grader.extract.regex: has no capture group 1");
    T_REJECTS(GRPO "{\"verifiable\":{\"scorer\":1}}}", "reward.verifiable.scorer: unknown field");
    T_REJECTS(GRPO "{\"format\":\"<think>\"}}", "reward.format: must be an object with a regex");
    T_REJECTS(GRPO "{\"format\":{\"weight\":1}}}", "reward.format.regex: is required");
    T_REJECTS(GRPO "{\"format\":{\"regex\":\"[\"}}}", "reward.format.regex: not a valid pattern at offset 1");
    T_REJECTS(GRPO "{\"format\":{\"regex\":\"x\",\"match\":\"all\"}}}",
              "reward.format.match: must be \"start\", \"full\" or \"search\"");
    T_REJECTS(GRPO "{\"format\":{\"regex\":\"x\",\"weight\":\"1\"}}}", "reward.format.weight: must be a number");
    T_REJECTS(GRPO "{\"format\":{\"regex\":\"x\",\"flags\":\"i\"}}}", "reward.format.flags: unknown field");
    T_REJECTS(GRPO "{\"http\":{}}}", "reward.http.url: is required");
    T_REJECTS(GRPO "{\"http\":{\"url\":\"ftp://h/x\"}}}",
              "reward.http.url: must be an http:// or https:// URL with a host, without spaces");
    T_REJECTS(GRPO "{\"http\":{\"url\":\"http:///x\"}}}", "reward.http.url: must be an http://");
    T_REJECTS(GRPO "{\"http\":{\"url\":\"http://h/a b\"}}}", "reward.http.url: must be an http://");
    T_REJECTS(GRPO "{\"http\":{\"url\":\"http://h/\",\"timeout_ms\":0}}}",
              "reward.http.timeout_ms: must be an integer in [1, 600000]");
    T_REJECTS(GRPO "{\"http\":{\"url\":\"http://h/\",\"batch\":0}}}", "reward.http.batch: must be an integer in [1, 4096]");
    T_REJECTS(GRPO "{\"http\":{\"url\":\"http://h/\",\"retries\":11}}}",
              "reward.http.retries: must be an integer in [0, 10]");
    T_REJECTS(GRPO "{\"http\":{\"url\":\"http://h/\",\"headers\":{}}}}", "reward.http.headers: unknown field");
    T_REJECTS(GRPO "{\"clip\":1}}", "reward: names no source (verifiable, format, http, reward_model or judge)");
    T_REJECTS("{\"method\":\"evaluate\",\"model\":\"m\",\"task\":{\"name\":\"addition\"},\"output_dir\":\"o\","
              "\"reward\":{\"format\":{\"regex\":\"x\"}}}", "reward.format: evaluate judges by");
#undef GRPO
}

int main(void) {
    test_error_fields();
    test_reward_sources();
    al_job j;
    char err[AL_ERRLEN];
    const char *ok = "{\"method\":\"dpo\",\"model\":\"m\",\"training_file\":\"f.jsonl\"}";
    T_OK(al_job_parse(&j, ok, strlen(ok), err));
    T_NEAR(j.hp.learning_rate, 1e-6, 1e-12);   /* DPOConfig */
    T_NEAR(j.hp.beta, 0.1, 1e-7);
    T_EQ_INT(j.hp.batch_size, 8);
    T_EQ_INT(j.hp.n_epochs, 3);
    T_EQ_INT(j.hp.max_length, 1024);
    T_EQ_INT(j.hp.precompute_ref_log_probs, 1);
    T_EQ_INT(j.hp.n_loss_types, 1);
    T_STR_EQ(j.hp.loss_type[0], "sigmoid");
    T_EQ_INT((long)j.hp.seed, 42);
    T_EQ_INT(j.use_lora, 0);
    /* the resolved description carries every default */
    json_t *h = json_object_get(j.resolved, "hyperparameters");
    T_NEAR(json_real_value(json_object_get(h, "max_grad_norm")), 1.0, 1e-7);
    T_STR_EQ(json_string_value(json_object_get(h, "lr_scheduler_type")), "linear");
    al_job_deinit(&j);

    /* mixed_precision: "auto" (the default) resolves to what this CPU does
     * (al_bf16_auto) and the resolved description says which; save_dtype
     * takes torch's names and the short ones, "auto" keeps the base's */
    const char *prec[] = {
        "{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\"}",
        "{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":"
        "{\"mixed_precision\":\"fp32\",\"save_dtype\":\"bfloat16\"}}",
        "{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":"
        "{\"mixed_precision\":\"bf16\",\"save_dtype\":\"fp16\"}}"};
    const int want_mp[] = {al_bf16_auto() ? AL_MP_BF16 : AL_MP_FP32, AL_MP_FP32, AL_MP_BF16};
    const int want_dt[] = {0, AL_DT_BF16, AL_DT_F16};
    const char *want_dt_name[] = {"auto", "bfloat16", "float16"};
    for (int i = 0; i < 3; i++) {
        T_OK(al_job_parse(&j, prec[i], strlen(prec[i]), err));
        T_EQ_INT(j.hp.mixed_precision, want_mp[i]);
        T_EQ_INT(j.hp.save_dtype, want_dt[i]);
        T_EQ_INT(al_job_open_flags(&j), want_mp[i] == AL_MP_BF16 ? AL_OPEN_BF16 : 0);
        json_t *hp = json_object_get(j.resolved, "hyperparameters");
        T_STR_EQ(json_string_value(json_object_get(hp, "mixed_precision")),
                 want_mp[i] == AL_MP_BF16 ? "bf16" : "fp32");
        T_STR_EQ(json_string_value(json_object_get(hp, "save_dtype")), want_dt_name[i]);
        al_job_deinit(&j);
    }
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":"
              "{\"mixed_precision\":\"fp16\"}}",
              "hyperparameters.mixed_precision: must be \"bf16\", \"fp32\" or \"auto\"");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":"
              "{\"save_dtype\":\"int8\"}}",
              "hyperparameters.save_dtype: must be \"float32\", \"bfloat16\", \"float16\" or \"auto\"");

    const char *sft = "{\"method\":\"sft\",\"model\":\"m\",\"task\":{\"name\":\"addition\",\"rows\":50},"
                      "\"hyperparameters\":{\"n_epochs\":\"auto\",\"batch_size\":16,"
                      "\"gradient_accumulation_steps\":4,\"learning_rate\":\"auto\"},"
                      "\"lora\":{\"r\":16,\"alpha\":32,\"target_modules\":[\"q_proj\",\"v_proj\"]}}";
    T_OK(al_job_parse(&j, sft, strlen(sft), err));
    T_NEAR(j.hp.learning_rate, 2e-5, 1e-12); /* SFTConfig */
    T_EQ_INT(j.hp.micro_batch_size, 4);
    T_EQ_INT(j.task_rows, 50);
    T_STR_EQ(j.task, "addition");
    T_EQ_INT(j.use_lora, 1);
    T_EQ_INT(j.lora.r, 16);
    T_STR_EQ(j.lora.targets, "q_proj,v_proj");
    al_job_deinit(&j);

    const char *multi = "{\"method\":\"dpo\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":"
                        "{\"loss_type\":[\"sigmoid\",\"ipo\"],\"loss_weights\":[0.8,0.2]}}";
    T_OK(al_job_parse(&j, multi, strlen(multi), err));
    T_EQ_INT(j.hp.n_loss_types, 2);
    T_NEAR(j.hp.loss_weights[1], 0.2, 1e-7);
    al_job_deinit(&j);

    T_REJECTS("not json", "job: invalid JSON");
    T_REJECTS("[]", "job: must be a JSON object");
    T_REJECTS("{\"model\":\"m\",\"training_file\":\"f\"}", "method: is required");
    T_REJECTS("{\"method\":\"dpx\",\"model\":\"m\",\"training_file\":\"f\"}", "method: 'dpx' is not one of");
    T_REJECTS("{\"method\":\"sft\",\"training_file\":\"f\"}", "model: is required");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\"}", "training_file: is required");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"task\":{\"name\":\"addition\"}}",
              "task: give either training_file or task");
    T_REJECTS("{\"method\":\"evaluate\",\"model\":\"m\",\"task\":{\"name\":\"addition\"},\"output_dir\":\"o\","
              "\"chat_template\":\"chatml\"}", "chat_template: evaluate uses each model's own template");
    /* training_files: weighted mixtures */
    const char *mix = "{\"method\":\"sft\",\"model\":\"m\",\"training_files\":[{\"file\":\"a\",\"weight\":0.7},"
                      "{\"file\":\"b\"}]}";
    T_OK(al_job_parse(&j, mix, strlen(mix), err));
    T_EQ_INT(j.n_train_files, 2);
    T_STR_EQ(j.train_files[1].file, "b");
    T_NEAR(j.train_files[1].weight, 1.0, 0);
    al_job_deinit(&j);
    const char *one = "{\"method\":\"sft\",\"model\":\"m\",\"training_files\":[{\"file\":\"a\"}]}";
    T_OK(al_job_parse(&j, one, strlen(one), err));
    T_EQ_INT(j.n_train_files, 0);
    T_STR_EQ(j.training_file, "a");
    al_job_deinit(&j);
    /* dataset_info: the job's for training_file and validation_file and the
     * mixture's entries without their own */
    const char *di = "{\"method\":\"sft\",\"model\":\"m\",\"dataset_info\":{\"formatting\":\"sharegpt\",\"columns\":"
                     "{\"messages\":\"d\"}},\"training_files\":[{\"file\":\"a\"},{\"file\":\"b\",\"dataset_info\":"
                     "{\"formatting\":\"sharegpt\",\"columns\":{\"messages\":\"e\"}}}],\"validation_file\":\"v\"}";
    T_OK(al_job_parse(&j, di, strlen(di), err));
    T_STR_EQ(al_job_file_dataset_info(&j, j.train_files[0].file)->col[AL_DI_MESSAGES], "d");
    T_STR_EQ(al_job_file_dataset_info(&j, j.train_files[1].file)->col[AL_DI_MESSAGES], "e");
    T_STR_EQ(al_job_file_dataset_info(&j, j.validation_file)->col[AL_DI_MESSAGES], "d");
    T_TRUE(al_job_file_dataset_info(&j, "a") == NULL); /* by identity: an eval task's file of the same name is not it */
    al_job_deinit(&j);
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"dataset_info\":{\"formatting\":\"sharegpt\"},\"training_files\":"
              "[{\"file\":\"a\",\"dataset_info\":{\"formatting\":\"sharegpt\"}}]}",
              "training_files[0].dataset_info: give it or dataset_info, not both");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_files\":[{\"file\":\"a\"},{\"file\":\"b\",\"dataset_info\":"
              "{\"formatting\":\"sharegpt\",\"tags\":{\"from\":\"x\"}}}]}", "training_files[1].dataset_info.tags.from: unknown field");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"a\",\"dataset_info\":{\"formatting\":\"csv\"}}",
              "dataset_info.formatting: must be \"alpaca\" or \"sharegpt\"");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_files\":[]}", "training_files: must be a list of 1 to 8");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_files\":[{\"file\":\"a\"},{\"weight\":1}]}",
              "training_files[1].file: is required");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_files\":[{\"file\":\"a\"},{\"file\":\"b\",\"weight\":0}]}",
              "training_files[1].weight: must be a number > 0");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_files\":[{\"file\":\"a\",\"w\":1}]}",
              "training_files[0].w: unknown field");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"a\",\"training_files\":[{\"file\":\"a\"}]}",
              "training_files: give either training_file or training_files");
    T_REJECTS("{\"method\":\"critique_revise\",\"model\":\"m\",\"principles\":[\"p\"],\"output_dir\":\"o\","
              "\"training_files\":[{\"file\":\"a\"},{\"file\":\"b\"}]}",
              "training_files: mixing several files is for the training methods");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"task\":{\"name\":\"chess\"}}",
              "task.name: 'chess' is not a built-in task");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"task\":{\"name\":\"addition\",\"rows\":0}}", "task.rows");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"bogus\":1}", "bogus: unknown field");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":{\"lr\":1}}",
              "hyperparameters.lr: unknown field");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":{\"batch_size\":0}}",
              "hyperparameters.batch_size: 0 is outside");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":{\"batch_size\":\"8\"}}",
              "hyperparameters.batch_size: must be an integer");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":{\"learning_rate\":-1}}",
              "hyperparameters.learning_rate: -1 is outside");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":"
              "{\"lr_scheduler_type\":\"step\"}}", "hyperparameters.lr_scheduler_type: must be");
    T_REJECTS("{\"method\":\"dpo\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":{\"beta\":0}}",
              "hyperparameters.beta");
    T_REJECTS("{\"method\":\"dpo\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":"
              "{\"loss_type\":\"xyz\"}}", "hyperparameters.loss_type: 'xyz' is not one of");
    T_REJECTS("{\"method\":\"dpo\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":"
              "{\"loss_type\":[\"sigmoid\",\"ipo\"],\"loss_weights\":[1]}}", "hyperparameters.loss_weights: has 1");
    T_REJECTS("{\"method\":\"dpo\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":"
              "{\"label_smoothing\":0.7}}", "hyperparameters.label_smoothing");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":"
              "{\"batch_size\":8,\"gradient_accumulation_steps\":3}}",
              "hyperparameters.gradient_accumulation_steps: 3 does not divide");
    T_REJECTS("{\"method\":\"dpo\",\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":{\"packing\":true}}",
              "hyperparameters.packing: only sft and pretrain pack sequences");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"lora\":{\"r\":0}}", "lora.r");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"lora\":{\"dropout\":0.1}}",
              "lora.dropout: only 0");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"lora\":{\"target_modules\":[1]}}",
              "lora.target_modules[0]");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"seed\":-1}", "seed: must be");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"eval_tasks\":[{\"name\":\"x\"}]}",
              "eval_tasks[0].name: 'x' is not a built-in task");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"\",\"training_file\":\"f\"}", "model: must be a non-empty string");
    return t_done();
}
