// What the New-job form knows about methods: each method's purpose, the
// data it trains on, and its hyper-parameters with TRL's defaults (the
// table of lib/train/job.c for the supervised and preference methods; TRL's
// PPO/GRPO/RLOO configs for the RL methods of issue 5) and the ranges the
// API enforces, so the form can validate before it submits.

export const METHODS = [
  { id: 'sft', group: 'Supervised', label: 'SFT — supervised fine-tuning', data: 'text, messages or prompt/completion rows',
    about: 'Teaches the model to imitate the completions or assistant turns in the data (cross-entropy on the target tokens).' },
  { id: 'pretrain', group: 'Supervised', label: 'Pretraining — continued language modelling', data: 'text rows',
    about: 'Next-token prediction on every token of raw text.' },
  { id: 'reward_model', group: 'Reward', label: 'Reward model', data: 'prompt/chosen/rejected pairs, rankings or ratings',
    about: 'Trains a scalar head to score the chosen response above the rejected one (Bradley–Terry). Its output can reward PPO, GRPO and RLOO.' },
  { id: 'dpo', group: 'Preference', label: 'DPO — direct preference optimisation', data: 'prompt/chosen/rejected pairs',
    about: 'Raises the chosen response\'s likelihood relative to the rejected one, measured against a frozen reference; no reward model needed. loss_type picks IPO, hinge, robust and the other variants.' },
  { id: 'kto', group: 'Preference', label: 'KTO — unpaired preferences', data: 'prompt/completion/label rows (label true = desirable)',
    about: 'Learns from thumbs-up / thumbs-down examples that need not come in pairs.' },
  { id: 'orpo', group: 'Preference', label: 'ORPO — odds-ratio preference optimisation', data: 'prompt/chosen/rejected pairs',
    about: 'SFT on the chosen response plus an odds-ratio penalty on the rejected one; no reference model.' },
  { id: 'simpo', group: 'Preference', label: 'SimPO — simple preference optimisation', data: 'prompt/chosen/rejected pairs',
    about: 'Length-normalised log-likelihood margin with a target margin gamma; no reference model.' },
  { id: 'ppo', group: 'Reinforcement learning', label: 'PPO — proximal policy optimisation', data: 'prompt rows (+ answer for a verifiable reward) or a built-in task', rl: true,
    about: 'Samples responses, scores them with the reward sources below, and updates the policy with a clipped surrogate while a per-token KL penalty keeps it near the reference. Uses a critic (value head).' },
  { id: 'grpo', group: 'Reinforcement learning', label: 'GRPO — group relative policy optimisation', data: 'prompt rows or a built-in task', rl: true,
    about: 'Samples a group of completions per prompt and uses each one\'s reward relative to its group as the advantage; no critic.' },
  { id: 'rloo', group: 'Reinforcement learning', label: 'RLOO — REINFORCE leave-one-out', data: 'prompt rows or a built-in task', rl: true,
    about: 'REINFORCE with the mean reward of the other samples of the same prompt as baseline; KL in the sequence reward.' },
  { id: 'generate_preferences', group: 'AI feedback', label: 'Generate preferences', data: 'prompt rows or a built-in task', rl: true,
    about: 'Samples N responses per prompt, scores them (reward model, verifiable reward or AI judge) and writes a prompt/chosen/rejected file a DPO job can train on.' },
  { id: 'critique_revise', group: 'AI feedback', label: 'Critique and revise (Constitutional AI)', data: 'prompt rows or a built-in task', rl: true,
    about: 'The model answers, critiques its answer against a principle, and revises it; writes an SFT file of revisions and a pairs file (revision preferred).' },
  { id: 'evaluate', group: 'AI feedback', label: 'Evaluate — win rate of A against B', data: 'prompt rows or a built-in task', rl: true,
    about: 'Win rate of the model against a second model, judged by a reward model or the AI judge in both orders (to cancel position bias), plus exact match on built-in tasks.' },
];

export const METHOD = Object.fromEntries(METHODS.map((m) => [m.id, m]));
export const PREF = new Set(['dpo', 'kto', 'orpo', 'simpo']);
export const RL = new Set(['ppo', 'grpo', 'rloo', 'generate_preferences', 'critique_revise', 'evaluate']);
export const TASKS = ['addition', 'addition2', 'reversal', 'sorting', 'word_problems'];

export const DPO_LOSSES = ['sigmoid', 'hinge', 'ipo', 'exo_pair', 'nca_pair', 'robust', 'bco_pair',
  'sppo_hard', 'aot', 'aot_unpaired', 'apo_zero', 'apo_down', 'discopop', 'sft'];

const LR = { sft: 2e-5, pretrain: 5e-5, reward_model: 1e-4, ppo: 3e-6 };

const ALL = null; // the field applies to every method

// type: int | float | bool | enum | text. def may be a function of the method.
// methods: list of method ids the field applies to (null: all).
export const HPARAMS = [
  { name: 'n_epochs', type: 'int', lo: 1, hi: 100000, def: 3, methods: ALL, basic: true,
    help: 'Passes over the training data. Ignored when max_steps > 0.' },
  { name: 'max_steps', type: 'int', lo: -1, hi: 1e12, def: -1, methods: ALL, basic: true,
    help: 'Optimiser steps to run; -1 derives them from n_epochs, 0 only evaluates.' },
  { name: 'batch_size', type: 'int', lo: 1, hi: 65536, def: 8, methods: ALL, basic: true,
    help: 'Examples (pairs for preference methods, prompts for RL) per optimiser step.' },
  { name: 'learning_rate', type: 'float', lo: 0, hi: 10, def: (m) => LR[m] ?? 1e-6, methods: ALL, basic: true,
    help: 'TRL\'s default for the method: 2e-5 SFT, 5e-5 pretraining, 1e-4 reward model, 3e-6 PPO, 1e-6 DPO/KTO/ORPO/SimPO/GRPO/RLOO. Preference and RL methods need far smaller rates than SFT.' },
  { name: 'lr_scheduler_type', type: 'enum', options: ['linear', 'cosine', 'constant'], def: 'linear', methods: ALL,
    help: 'How the learning rate decays after warm-up (linear to zero by default).' },
  { name: 'warmup_ratio', type: 'float', lo: 0, hi: 1, def: 0, methods: ALL,
    help: 'Fraction of the steps spent ramping the learning rate up from zero.' },
  { name: 'gradient_accumulation_steps', type: 'int', lo: 1, hi: 65536, def: 1, methods: ALL,
    help: 'Splits each batch into this many micro-batches to save memory; must divide batch_size.' },
  { name: 'max_length', type: 'int', lo: 2, hi: 1 << 20, def: 1024, methods: ALL,
    help: 'Longest sequence in tokens (prompt + completion). Longer rows are truncated, and reported.' },
  { name: 'weight_decay', type: 'float', lo: 0, hi: 10, def: 0, methods: ALL, help: 'AdamW decoupled weight decay.' },
  { name: 'max_grad_norm', type: 'float', lo: 0, hi: 1e6, def: 1.0, methods: ALL,
    help: 'Gradients are clipped to this global norm; 0 disables clipping.' },
  { name: 'logging_steps', type: 'int', lo: 1, hi: 1 << 30, def: 10, methods: ALL,
    help: 'Metrics are recorded every this many steps (the charts\' resolution).' },
  { name: 'eval_steps', type: 'int', lo: 0, hi: 1 << 30, def: 0, methods: ALL,
    help: 'Evaluate on the validation split every this many steps; 0 evaluates at the end only.' },
  { name: 'save_steps', type: 'int', lo: 0, hi: 1 << 30, def: 500, methods: ALL,
    help: 'Write a resumable checkpoint every this many steps.' },
  // preference family
  { name: 'beta', type: 'float', lo: 0, hi: 1e6, def: 0.1, methods: ['dpo', 'kto', 'orpo', 'simpo'], basic: true,
    help: 'How strongly the policy is held to the reference (DPO/KTO), ORPO\'s odds-ratio weight λ, SimPO\'s reward scale. Lower beta lets the model move further.' },
  { name: 'loss_type', type: 'enum', options: DPO_LOSSES, def: 'sigmoid', methods: ['dpo'], basic: true,
    help: 'sigmoid is the DPO paper\'s loss; ipo regresses the margin to 1/(2β); hinge is SLiC; robust tolerates label noise (with label_smoothing).' },
  { name: 'label_smoothing', type: 'float', lo: 0, hi: 0.5, def: 0, methods: ['dpo'],
    help: 'Assumed probability that a preference label is flipped (cDPO / robust DPO).' },
  { name: 'rpo_alpha', type: 'float', lo: 0, hi: 1e6, def: 0, methods: ['dpo'],
    help: 'Weight of an added NLL term on the chosen response (RPO); 0 turns it off.' },
  { name: 'simpo_gamma', type: 'float', lo: -1e6, hi: 1e6, def: 0.5, methods: ['simpo'],
    help: 'Target reward margin γ between chosen and rejected.' },
  { name: 'desirable_weight', type: 'float', lo: 0, hi: 1e6, def: 1.0, methods: ['kto'],
    help: 'Weight of desirable examples; raise it when they are rarer than undesirable ones.' },
  { name: 'undesirable_weight', type: 'float', lo: 0, hi: 1e6, def: 1.0, methods: ['kto'],
    help: 'Weight of undesirable examples.' },
  { name: 'center_rewards_coefficient', type: 'float', lo: 0, hi: 1e6, def: 0, methods: ['reward_model'],
    help: 'Pulls the mean reward toward zero (e.g. 0.01); 0 is off.' },
  { name: 'precompute_ref_log_probs', type: 'bool', def: true, methods: ['dpo', 'kto'],
    help: 'Score the data with the reference once before training, so the reference never sits in memory.' },
  { name: 'packing', type: 'bool', def: false, methods: ['sft', 'pretrain'],
    help: 'Packs short examples into rows of max_length (they never attend to each other); batch_size then counts rows.' },
  { name: 'completion_only_loss', type: 'bool', def: true, methods: ['sft'],
    help: 'Train on the completion only, not the prompt (prompt/completion data).' },
  { name: 'assistant_only_loss', type: 'bool', def: false, methods: ['sft'],
    help: 'Train on assistant turns only (messages data).' },
  { name: 'group_by_length', type: 'bool', def: false, methods: ALL,
    help: 'Batches rows of similar length together: less padding, slightly less random order.' },
  { name: 'dedupe', type: 'bool', def: false, methods: ALL,
    help: 'Drop duplicate rows (they are reported either way).' },
  { name: 'gradient_checkpointing', type: 'bool', def: false, methods: ALL,
    help: 'Recompute activations in the backward pass: less memory, about a third more time.' },
  { name: 'mixed_precision', type: 'enum', options: ['auto', 'bf16', 'fp32'], def: 'auto', methods: ALL,
    help: 'bf16: matrix products in bf16 with fp32 accumulation (PyTorch CPU autocast), master weights, gradients and optimizer state in fp32, frozen weights held in bf16; auto picks bf16 where the CPU multiplies bf16 natively.' },
  { name: 'save_dtype', type: 'enum', options: ['auto', 'float32', 'bfloat16', 'float16'], def: 'auto', methods: ALL,
    help: 'dtype of the saved model weights; auto keeps the dtype the base checkpoint came in.' },
  { name: 'adam_beta1', type: 'float', lo: 0, hi: 0.999999, def: 0.9, methods: ALL, help: 'AdamW β1.' },
  { name: 'adam_beta2', type: 'float', lo: 0, hi: 0.999999999, def: 0.999, methods: ALL, help: 'AdamW β2.' },
  { name: 'adam_epsilon', type: 'float', lo: 0, hi: 1, def: 1e-8, methods: ALL, help: 'AdamW ε.' },
  // RL and the sampling jobs (lib/train/job.c; TRL's names and defaults)
  { name: 'num_generations', type: 'int', lo: 1, hi: 1024,
    def: (m) => ({ grpo: 8, rloo: 2, generate_preferences: 4 }[m] ?? 1),
    methods: ['grpo', 'rloo', 'generate_preferences'], basic: true,
    help: 'Completions sampled per prompt (at least 2). GRPO\'s advantage is each one\'s reward relative to its group; batch_size counts completions and must be a multiple of it.' },
  { name: 'max_completion_length', type: 'int', lo: 1, hi: 1 << 20,
    def: (m) => ({ ppo: 53, evaluate: 64, critique_revise: 128 }[m] ?? 256), methods: RLIDS(), basic: true,
    help: 'Longest sampled response in tokens (TRL: 53 for PPO\'s response_length, 256 for GRPO).' },
  { name: 'max_prompt_length', type: 'int', lo: 1, hi: 1 << 20, def: 512, methods: RLIDS(),
    help: 'Prompts longer than this are cut from the left.' },
  { name: 'temperature', type: 'float', lo: 0, hi: 100,
    def: (m) => ({ ppo: 0.7, evaluate: 0, critique_revise: 0 }[m] ?? 1.0), methods: RLIDS(),
    help: 'Sampling temperature of the rollouts; 0 decodes greedily (evaluate and critique_revise do by default).' },
  { name: 'top_p', type: 'float', lo: 0, hi: 1, def: 1.0, methods: RLIDS(), help: 'Nucleus sampling of the rollouts; 1 is off.' },
  { name: 'top_k', type: 'int', lo: 0, hi: 1 << 20, def: 0, methods: RLIDS(), help: 'Sample among the k likeliest tokens; 0 is off.' },
  { name: 'kl_coef', type: 'float', lo: 0, hi: 1e6, def: 0.05, methods: ['ppo'], basic: true,
    help: 'Weight of the per-token KL penalty to the reference in the reward. Too low and the policy drifts (and games the reward); too high and it cannot move.' },
  { name: 'rl_beta', param: 'beta', type: 'float', lo: 0, hi: 1e6, def: (m) => (m === 'rloo' ? 0.05 : 0.0), methods: ['grpo', 'rloo'], basic: true,
    help: 'KL weight to the reference: GRPO\'s k3 term in the loss (TRL\'s current default 0: no reference model needed), RLOO\'s penalty in the sequence reward (0.05).' },
  { name: 'kl_estimator', type: 'enum', options: ['k1', 'k3'], def: 'k1', methods: ['ppo'],
    help: 'k1 is the log-ratio (unbiased, noisy, can go negative); k3 is always positive with lower variance.' },
  { name: 'adaptive_kl', type: 'bool', def: false, methods: ['ppo'],
    help: 'Adjust kl_coef to hold the KL near target_kl (Ziegler et al., TRL 0.x).' },
  { name: 'target_kl', type: 'float', lo: 0, hi: 1e6, def: 6.0, methods: ['ppo'], help: 'The KL the adaptive controller aims for.' },
  { name: 'kl_horizon', type: 'float', lo: 1, hi: 1e12, def: 10000, methods: ['ppo'], help: 'How fast the adaptive controller reacts (larger is slower).' },
  { name: 'whiten_rewards', type: 'bool', def: false, methods: ['ppo'], help: 'Normalise rewards per batch before GAE.' },
  { name: 'gamma', type: 'float', lo: 0, hi: 1, def: 1.0, methods: ['ppo'], help: 'GAE discount γ.' },
  { name: 'lam', type: 'float', lo: 0, hi: 1, def: 0.95, methods: ['ppo'], help: 'GAE λ: bias (low) against variance (high) of the advantages.' },
  { name: 'cliprange', type: 'float', lo: 0, hi: 100, def: 0.2, methods: ['ppo'],
    help: 'Clipping ε of the surrogate: how far one update may move the probability ratio.' },
  { name: 'cliprange_value', type: 'float', lo: 0, hi: 1e6, def: 0.2, methods: ['ppo'], help: 'Clipping of the value loss.' },
  { name: 'vf_coef', type: 'float', lo: 0, hi: 1e6, def: 0.1, methods: ['ppo'], help: 'Weight of the value (critic) loss.' },
  { name: 'num_ppo_epochs', type: 'int', lo: 1, hi: 1000, def: 4, methods: ['ppo'], help: 'Optimisation passes over each batch of rollouts.' },
  { name: 'num_mini_batches', type: 'int', lo: 1, hi: 65536, def: 1, methods: ['ppo'], help: 'Mini-batches per pass; must divide batch_size.' },
  { name: 'epsilon', type: 'float', lo: 0, hi: 100, def: 0.2, methods: ['grpo', 'rloo'], help: 'Lower clipping ε of the probability ratio.' },
  { name: 'epsilon_high', type: 'float', lo: -1, hi: 100, def: -1, methods: ['grpo', 'rloo'],
    help: 'Upper clipping ε; -1 uses epsilon. DAPO\'s clip-higher uses 0.28.' },
  { name: 'scale_rewards', type: 'enum', options: ['group', 'batch', 'none'], def: 'group', methods: ['grpo'],
    help: 'Divide advantages by the group\'s reward std (group), the batch\'s (batch), or not at all (none, as Dr. GRPO).' },
  { name: 'rl_loss_type', param: 'loss_type', type: 'enum', options: ['dapo', 'grpo', 'dr_grpo', 'bnpo'], def: 'dapo', methods: ['grpo', 'rloo'],
    help: 'How token losses are averaged: dapo (over all tokens of the batch, TRL\'s default since 0.22), grpo (per sequence), dr_grpo (by a constant), bnpo.' },
  { name: 'num_iterations', type: 'int', lo: 1, hi: 1000, def: 1, methods: ['grpo', 'rloo'], help: 'Updates per batch of rollouts (GRPO\'s μ).' },
  { name: 'normalize_advantages', type: 'bool', def: false, methods: ['rloo'], help: 'Whiten the leave-one-out advantages across the batch.' },
  { name: 'missing_eos_penalty', type: 'float', lo: 0, hi: 1e6, def: 0, methods: ['ppo', 'grpo', 'rloo'],
    help: 'Subtracted from the score of a response that never ends (TRL\'s missing_eos_penalty).' },
  { name: 'mask_truncated_completions', type: 'bool', def: false, methods: ['grpo', 'rloo'],
    help: 'Leave responses cut at max_completion_length out of the loss (DAPO).' },
  { name: 'entropy_coef', type: 'float', lo: 0, hi: 1e6, def: 0, methods: ['ppo', 'grpo', 'rloo'],
    help: 'Entropy bonus: keeps the policy from collapsing onto one answer.' },
  { name: 'sft_mix_ratio', type: 'float', lo: 0, hi: 1e6, def: 0, methods: ['ppo', 'grpo', 'rloo'],
    help: 'SFT batches mixed into RL, per RL batch (a guard against forgetting and reward hacking; needs SFT rows).' },
  { name: 'kl_warn', type: 'float', lo: 0, hi: 1e12, def: 10, methods: ['ppo', 'grpo', 'rloo'],
    help: 'A warn event is logged when the KL exceeds this bound.' },
];

function RLIDS() { return ['ppo', 'grpo', 'rloo', 'generate_preferences', 'critique_revise', 'evaluate']; }


export function applies(f, method) { return !f.methods || f.methods.includes(method); }
export function defOf(f, method) { return typeof f.def === 'function' ? f.def(method) : f.def; }
export function paramOf(f) { return f.param || f.name; }

// Client-side checks mirroring lib/train/job.c. Returns a message or ''.
export function checkValue(f, raw) {
  if (f.type === 'bool' || f.type === 'enum') return '';
  const s = String(raw).trim();
  if (s === '' || s === 'auto') return '';
  const x = Number(s);
  if (!Number.isFinite(x)) return f.type === 'int' ? 'must be an integer' : 'must be a number';
  if (f.type === 'int' && !Number.isInteger(x)) return 'must be an integer';
  if (x < f.lo || x > f.hi) return `${s} is outside [${f.lo}, ${f.hi}]`;
  return '';
}

// What the charts explain, keyed by chart id.
export const NOTES = {
  loss: 'Training loss per logged step; eval_loss is the validation split. Eval loss rising while training loss falls is overfitting.',
  rewards: 'Implicit rewards β·log(π/π_ref) of the chosen and rejected responses. Both falling while the margin grows is normal for DPO: the model lowers the likelihood of both, the rejected one faster. Worry when the margin stops growing or the chosen reward falls steeply for long.',
  accuracy: 'Share of pairs whose chosen reward beats the rejected one. Near 1.0 early on small data can mean the pairs are too easy or memorised.',
  reward: 'Mean reward of the sampled responses. A reward that climbs while response length grows is a warning sign (length hacking): read the samples.',
  kl: 'KL divergence from the reference. It should grow slowly; a sudden jump or explosion means the policy is leaving the region where the reward is trustworthy.',
  entropy: 'Entropy of the policy\'s next-token distribution. A collapse toward zero means it answers the same way every time (mode collapse).',
  clip: 'Share of tokens whose probability ratio was clipped. Persistently above ~0.2 means updates are too large (lower the learning rate).',
  winrate: 'Share of prompts where the model beat model B (ties count half), and exact match on prompts with a reference answer.',
  diversity: 'distinct-2: the share of distinct word pairs in the samples; falling toward 0 is mode collapse. frac_reward_zero_std: groups whose completions all got the same reward teach GRPO nothing.',
  length: 'Mean response length in tokens. Compare with the reward chart: both climbing together may be the reward model preferring length.',
  lr: 'The schedule: warm-up then decay.',
  grad: 'Global gradient norm before clipping (max_grad_norm). Spikes precede divergence.',
  speed: 'Training throughput.',
  eval: 'Evaluation accuracy on the validation split and on built-in tasks (exact match).',
};
