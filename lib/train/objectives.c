/* The objective registry: every obj_*.c by its method name (objective.h).
 * Constant; safe to call from any thread. */
#include "objective.h"

#include <string.h>

static const al_objective_ops *const g_objectives[] = {
    &al_obj_pretrain, &al_obj_sft,  &al_obj_reward_model, &al_obj_dpo,
    &al_obj_kto,      &al_obj_orpo, &al_obj_simpo,        &al_obj_ppo,
    &al_obj_grpo,     &al_obj_rloo, NULL,
};

const al_objective_ops *al_objective_find(const char *name) {
    if (!name) return NULL;
    for (int i = 0; g_objectives[i]; i++)
        if (strcmp(g_objectives[i]->name, name) == 0) return g_objectives[i];
    return NULL;
}

const al_objective_ops *const *al_objectives(void) { return g_objectives; }
