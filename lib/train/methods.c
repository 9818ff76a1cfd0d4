/* The method registry (see methods.h): the methods, their hyper-parameters
 * and their defaults, as constant tables.
 *
 * Defaults follow TRL's main branch (2025): SFTConfig lr 2e-5,
 * DPOConfig/KTOConfig/ORPOConfig/CPOConfig lr 1e-6, RewardConfig lr 1e-4,
 * TrainingArguments (pretrain) lr 5e-5; batch 8, 3 epochs, linear schedule,
 * max_grad_norm 1, max_length 1024, logging every 10 steps, saving every
 * 500, seed 42. Where we differ on purpose: precompute_ref_log_probs
 * defaults on (the reference is then never held in memory) and
 * gradient_checkpointing defaults off (CPU memory is plentiful;
 * recomputation costs a third more time).
 *
 * Written as tables rather than read from a file: each row names a member of
 * al_hparams (offsetof), which only the compiler can check. */
#include "methods.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../compute/ops.h"
#include "../model/safetensors.h"
#include "hparams.h"

/* ---- methods --------------------------------------------------------------- */

enum {
    M_PRETRAIN, M_SFT, M_REWARD_MODEL, M_DPO, M_KTO, M_ORPO, M_SIMPO, M_PPO, M_GRPO, M_RLOO,
    M_GENERATE_PREFERENCES, M_EVALUATE, M_CRITIQUE_REVISE, M_CLEAN_DATA, M_COUNT
};
#define B(m) (1u << M_##m)
/* every method that trains or samples a model (clean_data takes none of them) */
#define ALL ((1u << M_COUNT) - 1 - B(CLEAN_DATA))
/* the methods that sample completions */
#define SAMPLERS (B(PPO) | B(GRPO) | B(RLOO) | B(GENERATE_PREFERENCES) | B(EVALUATE) | B(CRITIQUE_REVISE))
#define RL3 (B(PPO) | B(GRPO) | B(RLOO))

/* TRL's per-method defaults (main unless said): the learning rates of
 * SFTConfig, TrainingArguments, RewardConfig and the experimental PPOConfig
 * (the field's 1e-6 is DPOConfig's, KTOConfig's, ORPOConfig's, CPOConfig's,
 * GRPOConfig's and RLOOConfig's); GRPO's beta 0 (main; 0.04 before 0.19),
 * RLOO's beta 0.05, PPO's temperature 0.7 and response_length 53
 * (OnPolicyConfig), num_generations 8 (GRPO) and 2 (RLOO, v0.11's rloo_k);
 * GRPO's loss_type "dapo" since TRL 0.22 ("bnpo" before, "grpo"
 * originally), RLOO and PPO the token mean over the batch as well. The
 * sampling jobs draw 4 completions per prompt, and evaluate and
 * critique_revise decode greedily. */
static const al_hp_override d_sft[] = {{"learning_rate", 2e-5, NULL, 0}, {NULL, 0, NULL, 0}};
static const al_hp_override d_pretrain[] = {{"learning_rate", 5e-5, NULL, 0}, {NULL, 0, NULL, 0}};
static const al_hp_override d_reward_model[] = {{"learning_rate", 1e-4, NULL, 0}, {NULL, 0, NULL, 0}};
static const al_hp_override d_simpo[] = {{"loss_type", 0, "simpo", 0}, {NULL, 0, NULL, 0}};
static const al_hp_override d_ppo[] = {
    {"learning_rate", 3e-6, NULL, 0}, {"loss_type", 0, "dapo", 0}, {"temperature", 0.7, NULL, 0},
    {"max_completion_length", 53, NULL, 0}, {NULL, 0, NULL, 0}};
static const al_hp_override d_grpo[] = {
    {"beta", 0.0, NULL, 0}, {"loss_type", 0, "dapo", 0}, {"num_generations", 8, NULL, 0}, {NULL, 0, NULL, 0}};
static const al_hp_override d_rloo[] = {
    {"beta", 0.05, NULL, 0}, {"loss_type", 0, "dapo", 0}, {"num_generations", 2, NULL, 0}, {NULL, 0, NULL, 0}};
static const al_hp_override d_generate_preferences[] = {{"num_generations", 4, NULL, 0}, {NULL, 0, NULL, 0}};
static const al_hp_override d_evaluate[] = {
    {"temperature", 0, NULL, 0}, {"max_completion_length", 64, NULL, 0}, {NULL, 0, NULL, 0}};
static const al_hp_override d_critique_revise[] = {
    {"temperature", 0, NULL, 0}, {"max_completion_length", 128, NULL, 0}, {NULL, 0, NULL, 0}};

/* RL on a built-in task: the settings a job leaves out come from this
 * recipe before the method's TRL default. TRL's defaults are made for
 * billion-parameter models (learning rates of 1e-6, a handful of completions
 * per step); on the built-in tasks' small models they learn nothing, and the
 * few-completion batches give updates that are mostly noise: on addition2,
 * GRPO with 64 completions per step (8 prompts x 8) and lr 3e-4 moved held-out
 * exact match by +0.17 / +0.01 / +0.15 over three seeds, while 256 (32 x 8) at
 * lr 1e-4 gave +0.34 / +0.21 / +0.33 (bench/learn_sweep.py; BENCHMARKS.md,
 * "Learning"); PPO against a good reward model at 128 prompts per step
 * gave +0.06 / +0.20 / +0.34, at 256 +0.17 / +0.24 / +0.40. The gradient norm of those steps is 1-3 (PPO's 3-6), so TRL's
 * max_grad_norm of 1 rescales every update; the recipe's 10 only guards
 * against spikes, and clipping at 1 was no better (the recipe: +0.36 / +0.19
 * / +0.34). A job that sets its own batch_size gets TRL's group and
 * mini-batch counts (unless_batch), which divide any batch it is likely to
 * give. */
static const al_hp_override t_grpo[] = {
    {"learning_rate", 1e-4, NULL, 0}, {"batch_size", 256, NULL, 0}, {"num_generations", 8, NULL, 1},
    {"beta", 0.04, NULL, 0},          {"max_grad_norm", 10, NULL, 0},
    {"lr_scheduler_type", AL_SCHED_CONSTANT, NULL, 0}, {NULL, 0, NULL, 0}};
static const al_hp_override t_rloo[] = {
    {"learning_rate", 1e-4, NULL, 0}, {"batch_size", 256, NULL, 0}, {"num_generations", 8, NULL, 1},
    {"max_grad_norm", 10, NULL, 0},   {"lr_scheduler_type", AL_SCHED_CONSTANT, NULL, 0}, {NULL, 0, NULL, 0}};
static const al_hp_override t_ppo[] = {
    {"learning_rate", 5e-5, NULL, 0}, {"batch_size", 256, NULL, 0}, {"num_mini_batches", 8, NULL, 1},
    {"temperature", 1.0, NULL, 0},    {"max_grad_norm", 10, NULL, 0},
    {"lr_scheduler_type", AL_SCHED_CONSTANT, NULL, 0}, {NULL, 0, NULL, 0}};

/* what RL and generate_preferences take: rewards (required), a judge, shaping */
#define T_RL (AL_TAKES_REWARD | AL_NEEDS_REWARD | AL_TAKES_JUDGE | AL_TAKES_SHAPING)

/* The registry test build (tests/browser) gives SFT a reference model: the
 * form must show the field from the registry alone. */
#ifdef AL_METHODS_PROBE
#define SFT_TAKES AL_TAKES_REF_MODEL
#else
#define SFT_TAKES 0
#endif

#define SUPERVISED "Supervised"
#define PREFERENCE "Preference"
#define RL_GROUP "Reinforcement learning"
#define AIF "AI feedback"
#define PAIRS "prompt/chosen/rejected pairs"
#define PROMPTS "prompt rows or a built-in task"

static const al_method g_methods[M_COUNT + 1] = {
    [M_PRETRAIN] = {"pretrain", AL_METHOD_TRAIN, 1, SUPERVISED, "Pretraining — continued language modelling",
                    "Next-token prediction on every token of raw text.", "text rows", &al_obj_pretrain,
                    d_pretrain, NULL, 0},
    [M_SFT] = {"sft", AL_METHOD_TRAIN, 1, SUPERVISED, "SFT — supervised fine-tuning",
               "Teaches the model to imitate the completions or assistant turns in the data (cross-entropy on "
               "the target tokens).",
               "text, messages or prompt/completion rows", &al_obj_sft, d_sft, NULL, SFT_TAKES},
    [M_REWARD_MODEL] = {"reward_model", AL_METHOD_TRAIN, 1, "Reward", "Reward model",
                        "Trains a scalar head to score the chosen response above the rejected one "
                        "(Bradley–Terry). Its output can reward PPO, GRPO and RLOO.",
                        "prompt/chosen/rejected pairs, rankings or ratings", &al_obj_reward_model, d_reward_model,
                        NULL, 0},
    [M_DPO] = {"dpo", AL_METHOD_TRAIN, 1, PREFERENCE, "DPO — direct preference optimisation",
               "Raises the chosen response's likelihood relative to the rejected one, measured against a frozen "
               "reference; no reward model needed. loss_type picks IPO, hinge, robust and the other variants.",
               PAIRS, &al_obj_dpo, NULL, NULL, AL_TAKES_REF_MODEL},
    [M_KTO] = {"kto", AL_METHOD_TRAIN, 1, PREFERENCE, "KTO — unpaired preferences",
               "Learns from thumbs-up / thumbs-down examples that need not come in pairs.",
               "prompt/completion/label rows (label true = desirable)", &al_obj_kto, NULL, NULL, AL_TAKES_REF_MODEL},
    [M_ORPO] = {"orpo", AL_METHOD_TRAIN, 1, PREFERENCE, "ORPO — odds-ratio preference optimisation",
                "SFT on the chosen response plus an odds-ratio penalty on the rejected one; no reference model.",
                PAIRS, &al_obj_orpo, NULL, NULL, 0},
    [M_SIMPO] = {"simpo", AL_METHOD_TRAIN, 1, PREFERENCE, "SimPO — simple preference optimisation",
                 "Length-normalised log-likelihood margin with a target margin gamma; no reference model.", PAIRS,
                 &al_obj_simpo, d_simpo, NULL, 0},
    [M_PPO] = {"ppo", AL_METHOD_RL, 1, RL_GROUP, "PPO — proximal policy optimisation",
               "Samples responses, scores them with the reward sources, and updates the policy with a clipped "
               "surrogate while a per-token KL penalty keeps it near the reference. Uses a critic (value head).",
               "prompt rows (+ answer for a verifiable reward) or a built-in task", &al_obj_ppo, d_ppo, t_ppo,
               /* one completion per prompt: nothing for a judge to compare */
               AL_TAKES_REF_MODEL | AL_TAKES_REWARD | AL_NEEDS_REWARD | AL_TAKES_SHAPING | AL_TAKES_CRITIC},
    [M_GRPO] = {"grpo", AL_METHOD_RL, 1, RL_GROUP, "GRPO — group relative policy optimisation",
                "Samples a group of completions per prompt and uses each one's reward relative to its group as "
                "the advantage; no critic.",
                PROMPTS, &al_obj_grpo, d_grpo, t_grpo, AL_TAKES_REF_MODEL | T_RL},
    [M_RLOO] = {"rloo", AL_METHOD_RL, 1, RL_GROUP, "RLOO — REINFORCE leave-one-out",
                "REINFORCE with the mean reward of the other samples of the same prompt as baseline; KL in the "
                "sequence reward.",
                PROMPTS, &al_obj_rloo, d_rloo, t_rloo, AL_TAKES_REF_MODEL | T_RL},
    [M_GENERATE_PREFERENCES] = {"generate_preferences", AL_METHOD_DATA, 1, AIF, "Generate preferences",
                                "Samples N responses per prompt, scores them (reward model, verifiable reward or "
                                "AI judge) and writes a prompt/chosen/rejected file a DPO job can train on.",
                                PROMPTS, NULL, d_generate_preferences, NULL, T_RL},
    [M_EVALUATE] = {"evaluate", AL_METHOD_DATA, 1, AIF, "Evaluate — win rate of A against B",
                    "Win rate of the model against a second model, judged by a reward model or the AI judge in "
                    "both orders (to cancel position bias), plus exact match on built-in tasks.",
                    PROMPTS, NULL, d_evaluate, NULL, AL_TAKES_REWARD | AL_TAKES_JUDGE | AL_TAKES_MODEL_B},
    [M_CRITIQUE_REVISE] = {"critique_revise", AL_METHOD_DATA, 1, AIF, "Critique and revise (Constitutional AI)",
                           "The model answers, critiques its answer against a principle, and revises it; writes "
                           "an SFT file of revisions and a pairs file (revision preferred).",
                           PROMPTS, NULL, d_critique_revise, NULL, 0},
    [M_CLEAN_DATA] = {"clean_data", AL_METHOD_DATA, 0, "Data", "Clean data — filter a file",
                      "Applies the job's hygiene filters (near-duplicates, decontamination, length, language) to "
                      "training_file and writes the rows that pass as a new file; no model.",
                      "one data file of any format", NULL, NULL, NULL, 0},
    [M_COUNT] = {NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0},
};

const al_method *al_methods(void) { return g_methods; }

const al_method *al_method_find(const char *name) {
    for (int i = 0; name && i < M_COUNT; i++)
        if (!strcmp(g_methods[i].name, name)) return &g_methods[i];
    return NULL;
}

int al_method_is_rl(const char *method) {
    const al_method *m = al_method_find(method);
    return m && m->kind == AL_METHOD_RL;
}

int al_method_is_data(const char *method) {
    const al_method *m = al_method_find(method);
    return m && m->kind == AL_METHOD_DATA;
}

/* ---- hyper-parameters ---------------------------------------------------------- */

static const al_hp_choice c_sched[] = {
    {"constant", AL_SCHED_CONSTANT, 0}, {"linear", AL_SCHED_LINEAR, 0}, {"cosine", AL_SCHED_COSINE, 0}, {NULL, 0, 0}};
static const al_hp_choice c_scale[] = {
    {"group", AL_SCALE_GROUP, 0}, {"batch", AL_SCALE_BATCH, 0}, {"none", AL_SCALE_NONE, 0}, {NULL, 0, 0}};
static const al_hp_choice c_klest[] = {{"k1", AL_KL_K1, 0}, {"k3", AL_KL_K3, 0}, {NULL, 0, 0}};
static const char *const a_completion[] = {"max_new_tokens", "response_length", NULL};
/* "auto" stands for the default: the parser keeps it (mixed_precision's is
 * the CPU's, mp_auto), and it is listed last, as the errors word it */
static const al_hp_choice c_mp[] = {
    {"bf16", AL_MP_BF16, 0}, {"fp32", AL_MP_FP32, 0}, {"auto", AL_MP_AUTO, 0}, {NULL, 0, 0}};
/* torch's dtype names, the short ones accepted too; "auto" (0) keeps the
 * dtype the base checkpoint came in */
static const al_hp_choice c_dtype[] = {
    {"float32", AL_DT_F32, 0}, {"bfloat16", AL_DT_BF16, 0}, {"float16", AL_DT_F16, 0}, {"auto", 0, 0},
    {"fp32", AL_DT_F32, 1},    {"bf16", AL_DT_BF16, 1},     {"fp16", AL_DT_F16, 1},    {NULL, 0, 0}};

/* mixed_precision "auto": bf16 where this CPU multiplies bf16 natively
 * (al_bf16_auto; ALIGND_MIXED_PRECISION overrides), found when a job is
 * parsed so that its resolved description says which */
static double mp_auto(void) { return al_bf16_auto() ? AL_MP_BF16 : AL_MP_FP32; }

#define OFF(f) offsetof(al_hparams, f)
#define NUM(f, t, lo, hi, d, meth, fl, help) {#f, t, OFF(f), d, lo, hi, NULL, NULL, NULL, meth, fl, help, NULL}
#define INT(f, lo, hi, d, meth, fl, help) NUM(f, AL_HP_INT, lo, hi, d, meth, fl, help)
#define REAL(f, lo, hi, d, meth, fl, help) NUM(f, AL_HP_REAL, lo, hi, d, meth, fl, help)
#define BOOL(f, d, meth, help) NUM(f, AL_HP_BOOL, 0, 1, d, meth, 0, help)
#define ENUM(f, ch, d, meth, fl, help) {#f, AL_HP_ENUM, OFF(f), d, 0, 0, NULL, ch, NULL, meth, fl, help, NULL}

static const al_hp_spec g_specs[] = {
    INT(n_epochs, 1, 100000, 3, ALL, AL_HP_BASIC, "Passes over the training data. Ignored when max_steps > 0."),
    INT(batch_size, 1, 65536, 8, ALL, AL_HP_BASIC,
        "Examples (pairs for preference methods, completions for GRPO and RLOO, prompts for PPO) per optimiser "
        "step."),
    INT(gradient_accumulation_steps, 1, 65536, 1, ALL, 0,
        "Splits each batch into this many micro-batches to save memory; must divide batch_size."),
    NUM(max_steps, AL_HP_LONG, -1, 1e12, -1, ALL, AL_HP_BASIC,
        "Optimiser steps to run; -1 derives them from n_epochs, 0 only evaluates."),
    REAL(learning_rate, 0, 10, 1e-6, ALL, AL_HP_BASIC,
         "Peak learning rate of AdamW. Preference and RL methods need far smaller rates than SFT."),
    ENUM(lr_scheduler_type, c_sched, AL_SCHED_LINEAR, ALL, 0,
         "How the learning rate decays after warm-up (linear to zero by default)."),
    REAL(warmup_ratio, 0, 1, 0, ALL, 0, "Fraction of the steps spent ramping the learning rate up from zero."),
    REAL(weight_decay, 0, 10, 0, ALL, 0, "AdamW decoupled weight decay."),
    REAL(max_grad_norm, 0, 1e6, 1.0, ALL, 0, "Gradients are clipped to this global norm; 0 disables clipping."),
    REAL(adam_beta1, 0, 0.999999, 0.9, ALL, 0, "AdamW β1."),
    REAL(adam_beta2, 0, 0.999999999, 0.999, ALL, 0, "AdamW β2."),
    REAL(adam_epsilon, 0, 1, 1e-8, ALL, 0, "AdamW ε."),
    INT(max_length, 2, 1 << 20, 1024, ALL, 0,
        "Longest sequence in tokens (prompt + completion). Longer rows are truncated, and reported."),
    BOOL(gradient_checkpointing, 0, ALL,
         "Recompute activations in the backward pass: less memory, about a third more time."),
    BOOL(packing, 0, B(PRETRAIN) | B(SFT),
         "Packs short examples into rows of max_length (they never attend to each other); batch_size then counts "
         "rows."),
    BOOL(dedupe, 0, ALL, "Drop duplicate rows (they are reported either way)."),
    BOOL(group_by_length, 0, ALL & ~B(KTO), /* kto trains in dataset order (job.c) */
         "Batches rows of similar length together: less padding, slightly less random order."),
    BOOL(completion_only_loss, 1, B(SFT), "Train on the completion only, not the prompt (prompt/completion data)."),
    BOOL(assistant_only_loss, 0, B(SFT), "Train on assistant turns only (messages data)."),
    /* the preference family */
    REAL(beta, 0, 1e6, 0.1, B(DPO) | B(KTO) | B(ORPO) | B(SIMPO) | B(GRPO) | B(RLOO), AL_HP_BASIC,
         "How strongly the policy is held to the reference: DPO's and KTO's β (lower lets the model move further), "
         "ORPO's odds-ratio weight λ, SimPO's reward scale; GRPO's k3 KL term in the loss (0: no reference model "
         "needed), RLOO's KL penalty in the sequence reward."),
    {"loss_type", AL_HP_NAMES, OFF(loss_type), 0, 0, 0, "sigmoid", NULL, NULL, B(DPO) | B(GRPO) | B(RLOO),
     AL_HP_BASIC,
     "DPO: sigmoid is the paper's loss, ipo regresses the margin to 1/(2β), hinge is SLiC, robust tolerates label "
     "noise (with label_smoothing); a list combines them by loss_weights. GRPO/RLOO: how token losses are "
     "averaged (dapo over all tokens of the batch, grpo per sequence, dr_grpo by a constant, bnpo).", NULL},
    {"loss_weights", AL_HP_REALS, OFF(loss_weights), 1, 0, HUGE_VAL, NULL, NULL, NULL, B(DPO), 0,
     "Weights of the loss types, one per entry of loss_type (1 each by default).", NULL},
    REAL(label_smoothing, 0, 0.5, 0, B(DPO), 0,
         "Assumed probability that a preference label is flipped (cDPO / robust DPO)."),
    REAL(rpo_alpha, 0, 1e6, 0, B(DPO), 0, "Weight of an added NLL term on the chosen response (RPO); 0 turns it off."),
    REAL(simpo_gamma, -1e6, 1e6, 0.5, B(SIMPO), 0, "Target reward margin γ between chosen and rejected."),
    REAL(desirable_weight, 0, 1e6, 1.0, B(KTO), 0,
         "Weight of desirable examples; raise it when they are rarer than undesirable ones."),
    REAL(undesirable_weight, 0, 1e6, 1.0, B(KTO), 0, "Weight of undesirable examples."),
    REAL(center_rewards_coefficient, 0, 1e6, 0, B(REWARD_MODEL), 0,
         "Pulls the mean reward toward zero (e.g. 0.01); 0 is off."),
    BOOL(precompute_ref_log_probs, 1, B(DPO) | B(KTO),
         "Score the data with the reference once before training, so the reference never sits in memory."),
    /* RL (TRL's GRPOConfig, RLOOConfig and experimental PPOConfig) and the sampling jobs */
    INT(num_generations, 1, 1024, 1, B(GRPO) | B(RLOO) | B(GENERATE_PREFERENCES), AL_HP_BASIC,
        "Completions sampled per prompt (at least 2). GRPO's advantage is each one's reward relative to its group; "
        "batch_size counts completions and must be a multiple of it."),
    {"max_completion_length", AL_HP_INT, OFF(max_completion_length), 256, 1, 1 << 20, NULL, NULL, a_completion,
     SAMPLERS, AL_HP_BASIC, "Longest sampled response in tokens (TRL's max_new_tokens; PPO's response_length).",
     NULL},
    INT(max_prompt_length, 1, 1 << 20, 512, SAMPLERS, 0, "Prompts longer than this are cut from the left."),
    REAL(temperature, 0, 100, 1.0, SAMPLERS, 0,
         "Sampling temperature of the rollouts; 0 decodes greedily (evaluate and critique_revise do by default)."),
    REAL(top_p, 0, 1, 1.0, SAMPLERS, 0, "Nucleus sampling of the rollouts; 1 is off."),
    INT(top_k, 0, 1 << 20, 0, SAMPLERS, 0, "Sample among the k likeliest tokens; 0 is off."),
    REAL(epsilon, 0, 100, 0.2, B(GRPO) | B(RLOO), 0, "Lower clipping ε of the probability ratio."),
    REAL(epsilon_high, -1, 100, -1, B(GRPO) | B(RLOO), 0,
         "Upper clipping ε; -1 uses epsilon. DAPO's clip-higher uses 0.28."),
    ENUM(scale_rewards, c_scale, AL_SCALE_GROUP, B(GRPO), AL_HP_BOOL_ALIAS,
         "Divide advantages by the group's reward std (group), the batch's (batch), or not at all (none, as "
         "Dr. GRPO); true and false are TRL's old group and none."),
    REAL(kl_coef, 0, 1e6, 0.05, B(PPO), AL_HP_BASIC,
         "Weight of the per-token KL penalty to the reference in the reward. Too low and the policy drifts (and "
         "games the reward); too high and it cannot move."),
    ENUM(kl_estimator, c_klest, AL_KL_K1, B(PPO), 0,
         "k1 is the log-ratio (unbiased, noisy, can go negative); k3 is always positive with lower variance."),
    BOOL(adaptive_kl, 0, B(PPO), "Adjust kl_coef to hold the KL near target_kl (Ziegler et al., TRL 0.x)."),
    REAL(target_kl, 0, 1e6, 6.0, B(PPO), 0, "The KL the adaptive controller aims for."),
    REAL(kl_horizon, 1, 1e12, 10000, B(PPO), 0, "How fast the adaptive controller reacts (larger is slower)."),
    REAL(gamma, 0, 1, 1.0, B(PPO), 0, "GAE discount γ."),
    REAL(lam, 0, 1, 0.95, B(PPO), 0, "GAE λ: bias (low) against variance (high) of the advantages."),
    BOOL(whiten_rewards, 0, B(PPO), "Normalise rewards per batch before GAE."),
    REAL(cliprange, 0, 100, 0.2, B(PPO), 0,
         "Clipping ε of the surrogate: how far one update may move the probability ratio."),
    REAL(cliprange_value, 0, 1e6, 0.2, B(PPO), 0, "Clipping of the value loss."),
    REAL(vf_coef, 0, 1e6, 0.1, B(PPO), 0, "Weight of the value (critic) loss."),
    INT(num_ppo_epochs, 1, 1000, 4, B(PPO), 0, "Optimisation passes over each batch of rollouts."),
    INT(num_mini_batches, 1, 65536, 1, B(PPO), 0, "Mini-batches per pass; must divide batch_size."),
    INT(num_iterations, 1, 1000, 1, B(GRPO) | B(RLOO), 0, "Updates per batch of rollouts (GRPO's μ)."),
    REAL(missing_eos_penalty, 0, 1e6, 0, RL3, 0,
         "Subtracted from the score of a response that never ends (TRL's missing_eos_penalty)."),
    REAL(sft_mix_ratio, 0, 1e6, 0, RL3, 0,
         "SFT batches mixed into RL, per RL batch (a guard against forgetting and reward hacking; needs SFT rows)."),
    REAL(entropy_coef, 0, 1e6, 0, RL3, 0, "Entropy bonus: keeps the policy from collapsing onto one answer."),
    BOOL(normalize_advantages, 0, B(RLOO), "Whiten the leave-one-out advantages across the batch."),
    BOOL(mask_truncated_completions, 0, B(GRPO) | B(RLOO),
         "Leave responses cut at max_completion_length out of the loss (DAPO)."),
    REAL(kl_warn, 0, 1e12, 10, RL3, 0, "A warn event is logged when the KL exceeds this bound."),
    {"mixed_precision", AL_HP_ENUM, OFF(mixed_precision), AL_MP_AUTO, 0, 0, NULL, c_mp, NULL, ALL, 0,
     "bf16: matrix products in bf16 with fp32 accumulation (PyTorch's CPU autocast), master weights, gradients "
     "and optimizer state in fp32, frozen weights held in bf16; auto picks bf16 where the CPU multiplies bf16 "
     "natively.", mp_auto},
    ENUM(save_dtype, c_dtype, 0, ALL, 0,
         "dtype of the saved model weights; auto keeps the dtype the base checkpoint came in."),
    INT(eval_steps, 0, 1 << 30, 0, ALL, 0,
        "Evaluate on the validation split every this many steps; 0 evaluates at the end only."),
    INT(save_steps, 0, 1 << 30, 500, ALL, 0, "Write a resumable checkpoint every this many steps."),
    INT(save_total_limit, 0, 1 << 20, 0, ALL, 0, "Keep only the newest this many checkpoints; 0 keeps every one."),
    INT(logging_steps, 1, 1 << 30, 10, ALL, 0,
        "Metrics are recorded every this many steps (the charts' resolution)."),
#ifdef AL_METHODS_PROBE
    /* The registry test build only (tests/browser): one row here must reach
     * the parser, GET /v1/methods and the dashboard's form. */
    {"registry_probe", AL_HP_INT, AL_HP_UNSTORED, 3, 0, 9, NULL, NULL, NULL, B(SFT), 0,
     "A field only the registry test build has.", NULL},
#endif
};
#undef NUM
#undef INT
#undef REAL
#undef BOOL
#undef ENUM
#define N_SPECS (int)(sizeof g_specs / sizeof g_specs[0])
_Static_assert(sizeof g_specs / sizeof g_specs[0] <= AL_HP_MAX, "raise AL_HP_MAX");

const al_hp_spec *al_hp_specs(int *n) {
    *n = N_SPECS;
    return g_specs;
}

const al_hp_spec *al_hp_find(const char *name) {
    for (int i = 0; name && i < N_SPECS; i++) {
        if (!strcmp(g_specs[i].name, name)) return &g_specs[i];
        for (const char *const *a = g_specs[i].aliases; a && *a; a++)
            if (!strcmp(*a, name)) return &g_specs[i];
    }
    return NULL;
}

int al_hp_takes(const al_hp_spec *f, const al_method *m) {
    return (f->methods >> (unsigned)(m - g_methods)) & 1u;
}

static const al_hp_override *entry(const al_hp_override *tab, const char *field) {
    for (; tab && tab->field; tab++)
        if (!strcmp(tab->field, field)) return tab;
    return NULL;
}

const al_hp_override *al_hp_task_default(const al_hp_spec *f, const al_method *m) {
    return entry(m->task_defaults, f->name);
}

double al_hp_default(const al_hp_spec *f, const al_method *m, int on_task, int own_batch) {
    const al_hp_override *t = on_task ? entry(m->task_defaults, f->name) : NULL;
    if (t && !(own_batch && t->unless_batch)) return t->v;
    const al_hp_override *d = entry(m->defaults, f->name);
    return d ? d->v : f->dflt_fn ? f->dflt_fn() : f->dflt;
}

const char *al_hp_default_name(const al_hp_spec *f, const al_method *m) {
    const al_hp_override *d = entry(m->defaults, f->name);
    return d && d->s ? d->s : f->dflt_name;
}

const char *const *al_hp_names(const al_hp_spec *f, const al_method *m) {
    return f->type == AL_HP_NAMES && al_hp_takes(f, m) && m->objective ? m->objective->loss_types : NULL;
}

const char *al_hp_choice_name(const al_hp_spec *f, int value) {
    for (const al_hp_choice *c = f->choices; c && c->name; c++)
        if (c->value == value && !c->hidden) return c->name;
    return NULL;
}
