"""DUS-RL: a quota policy that learns online, inside one training run, by REINFORCE.

One module per job: `options.py` (the selector, an initial policy's defaults, the checks),
`network.py` (the policy network and its action distribution), `reinforce.py` (the pending
decision and the REINFORCE step), `sampler.py` (the quota sampler that runs them).

The DUS paper's RL variant: a small policy network adapts the per-modality quotas while the
multimodal model trains; no fleet of past runs is needed. It meets exactly what a `QuotaEnv`
policy meets (`mmbalance.policies.signals`):

- observation: `quota_observation(status, t/T, last quotas, ...)`, clipped to its bounds;
- action: `QuotaActionMap` (`discrete`: a categorical per modality over the grid of batch
  sizes; `flat`: one categorical over all combinations; `continuous`: a Gaussian per
  modality, clipped to [-1, 1], or tanh-squashed for SAC policies);
- reward of a decision: `reward(before, after, RewardConfig)` on snapshots taken when the
  decision is made and `k` iterations later (the validation term uses the latest epoch's val
  accuracy, received with the next epoch's start; before the first epoch ends it is chance, 1/C,
  where the env evaluates the untrained model).

Every `k` iterations the sampler scores the pending decision and takes one REINFORCE step,
`loss = -(r - b) log pi(a|s) - entropy * H(pi(.|s))` (Adam, `lr`), then moves the baseline
`b <- b + baseline_beta (r - b)` (b starts at the first reward) and samples the next action.
Rewards are immediate (a contextual bandit: no discounting across decisions); the last
decision is scored at the run's last step, before the final validation. A clipped Gaussian
also pays `10 * relu(|mean| - 1)^2`: past the clip every sample gives the same quota, the
advantage vanishes and the policy would stay stuck at the edge.

The network follows the exported-policy convention (`policies/learned.py`): it outputs
action-distribution inputs (logits; or mean and log-std for a Box). `init=PATH` starts from
an exported RLlib quota policy (its observation and action spaces must match this run) and
keeps training it; without it a small MLP (`hidden`, tanh, near-uniform or centred on the
quota B at the start) is built. With init, the settings default to the policy's env config
(`steps_per_action`, `action_mode`, `quota_grid`, `reward`); a DQN policy's Q-values
(Discrete, `flat`) are read as logits.

Each step adds `rl_p_<m>_<n>` (probability that modality m gets n samples; discrete),
`rl_mean_<m>` (expected quota; continuous: the quota at the mean action), `rl_std_<m>`
(continuous: the Gaussian's std in action units), `rl_reward`, `rl_baseline`, `rl_entropy`
and `rl_updates` to the step table. Seeded from the run's sampler rng and a torch Generator,
so a run repeats exactly; a trainer checkpoint (the sampler's `state_dict`) carries the
network, its Adam state, the stream and the pending decision, so a restored run continues
exactly too.
"""

from mmbalance.policies.dus_rl.options import MODES, DUSRLOptions, dus_rl_options
from mmbalance.policies.dus_rl.sampler import DUSRLSampler

__all__ = ["MODES", "DUSRLOptions", "DUSRLSampler", "dus_rl_options"]
