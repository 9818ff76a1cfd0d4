/* Model folders: what a Hugging Face (or PEFT adapter) folder holds, and the
 * start-up registration of every folder under the models directory by its
 * folder name.
 *
 * Names: base folders are registered as their folder name ("tiny"); a
 * succeeded job's output as "ft:<model>:<suffix>:ftjob-<n>" (without
 * ":<suffix>" when the job has none; <model> is the root base model when
 * the job's model is itself "ft:..."), kind "fine_tuned" or "adapter" (then
 * base_model is the job's model); a checkpoint is reachable as
 * "ftjob-<n>:<step>" and a job's output also as "ftjob-<n>". */
#ifndef DAEMON_MODELS_H
#define DAEMON_MODELS_H

#include "model/config.h"
#include "store.h"

/* Fills m's path, kind (base | adapter), arch, params, has_score and info
 * from the folder, and its source ({"type":"folder","path"}) unless set.
 * -1 with the reason in err when it is not a model folder. */
int models_describe(const char *dir, store_model *m, char err[AL_ERRLEN]);
/* The info JSON of store_model (family, dtype, context_length,
 * chat_template) for the model folder dir whose config is in cdir (the base
 * of an adapter, else dir) into out (n bytes; "" when it does not fit). */
void models_info(const char *dir, const char *cdir, const al_model_config *cfg, char *out, size_t n);
/* Registers each model folder directly under dir by the rules of
 * POST /v1/models: a directory whose real path is inside dir (a symlink may
 * not lead out), a valid name (api_model_name_ok of api/ids.h: never a
 * job's output "ft:..." or a checkpoint "ftjob-N:STEP"), config.json or
 * adapter_config.json a regular file, and a name no other model holds (a
 * model of that name registered from another folder, or a job's output,
 * is left alone). What is skipped is logged with the reason. Returns how
 * many were registered. */
int models_scan(store *st, const char *dir);

/* The adapter folders below dir (a job's output, its checkpoints, a
 * critic's) whose base_model_name_or_path is old or below it name the same
 * folder below cur instead; each file is replaced atomically. Returns how
 * many were rewritten, or -1 with the file and reason in err. */
int models_relocate(const char *dir, const char *old, const char *cur, char err[AL_ERRLEN]);

#endif
