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
