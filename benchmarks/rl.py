"""RL benchmark: learning DUS quotas with PPO, evaluation on held-out seeds, reward gaming,
and the environment's throughput.

1. `mmbalance learn tune_configs/dus_ppo.yaml`: learning curve (episode return, final D and
   final validation accuracy against env steps), with the fixed heuristics' levels measured
   in the same env (same reward) drawn as lines -> results/rl_curve.png.
2. `mmbalance evaluate` of the exported policy against dus-h and uniform on held-out seeds.
3. Reward gaming: under the pure discrepancy reward, fixed policies that starve one modality
   versus uniform and DUS-H: their return and what they do to accuracy.
4. Throughput of one QuotaEnv: env steps and training samples per second, and the share of
   an env step spent outside the trainer.
Writes results/rl.md. Usage: python benchmarks/rl.py [--iterations 25] [--seeds 5]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import yaml
from _common import RESULTS, header, invocation, write_result

from mmbalance.cli import main as cli
from mmbalance.envs import QuotaEnv
from mmbalance.report_learn import plot_learning_curve
from mmbalance.runs import read_json

CONFIG = "tune_configs/dus_ppo.yaml"
# A lighter version of the shipped config so the benchmark fits in minutes on 2 cores:
# half the training data, 8-epoch runs, 128 env steps per PPO iteration.
OVERRIDES = [
    "env_config.data=synthetic:n_train=1500",
    "env_config.train.epochs=8",
    "training.train_batch_size_per_learner=128",
    "training.minibatch_size=32",
]


def fixed_policy_episodes(env_config: dict, policy, seeds: list[int]) -> dict:
    env = QuotaEnv(env_config)
    rows = []
    for seed in seeds:
        env.reset(seed=seed)
        done, ret, info = False, 0.0, {}
        quotas = []
        while not done:
            _, r, term, trunc, info = env.step(policy(env))
            ret += r
            quotas.append([info[f"quota_{m}"] for m in env.modalities])
            done = term or trunc
        row = {"return": ret, "final_D": info["discrepancy"], "final_val_acc": info["final_val_acc"],
               "final_test_acc": info["final_test_acc"]}
        row.update({f"test_acc_{m}": info[f"final_test_acc_{m}"] for m in env.modalities})
        row.update({f"mean_quota_{m}": float(np.mean([q[j] for q in quotas]))
                    for j, m in enumerate(env.modalities)})
        rows.append(row)
    return pd.DataFrame(rows).mean().to_dict()


def table(rows: dict[str, dict], cols: list[str]) -> str:
    lines = ["| policy | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=45)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--heuristic-episodes", type=int, default=5)
    args = p.parse_args()
    raw = RESULTS / "raw" / "rl"
    if raw.exists():
        shutil.rmtree(raw)
    raw.mkdir(parents=True)
    from mmbalance.tune.learn_config import apply_overrides

    cfg = apply_overrides(yaml.safe_load(Path(CONFIG).read_text()), OVERRIDES)
    env_config = cfg["env_config"]
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    parts = [header(invocation())]

    # 1. learning
    t0 = time.perf_counter()
    rc = cli(["learn", CONFIG, "--iterations", str(args.iterations), "--out", str(raw / "learn"),
              "--no-progress", *sets])
    assert rc == 0
    learn_minutes = (time.perf_counter() - t0) / 60
    progress = pd.read_parquet(raw / "learn" / "progress.parquet")
    heur_seeds = list(range(20_000, 20_000 + args.heuristic_episodes))
    levels = {
        "uniform": fixed_policy_episodes(env_config, lambda e: e.heuristic_action("uniform"),
                                         heur_seeds),
        "dus-h": fixed_policy_episodes(env_config, lambda e: e.heuristic_action("dus-h"),
                                       heur_seeds),
    }
    plot_learning_curve(progress, f"DUS quotas learned with PPO ({CONFIG}), synthetic data",
                        RESULTS / "rl_curve.png", levels)
    parts.append(
        f"**Learning** (`mmbalance learn {CONFIG} --iterations {args.iterations} "
        f"{' '.join('--set ' + o for o in OVERRIDES)}`): "
        f"{int(progress['env_steps'].iloc[-1])} env steps "
        f"({int(progress['episodes'].iloc[-1])} training runs) in {learn_minutes:.1f} min. "
        f"Fixed-policy levels: mean of {args.heuristic_episodes} episodes (seeds "
        f"{heur_seeds[0]}..{heur_seeds[-1]}) in the same env and reward.\n\n"
        "![learning curve](benchmarks/results/rl_curve.png)\n\n"
        + table(levels, ["return", "final_D", "final_val_acc", "final_test_acc"])
        + "\n\nLast PPO iteration: "
        + ", ".join(f"{c} {progress[c].iloc[-1]:.3f}" for c in
                    ["episode_return_mean", "discrepancy", "final_val_acc"] if c in progress)
    )

    # 2. held-out evaluation
    ev = raw / "evaluate"
    rc = cli(["evaluate", str(raw / "learn" / "policy"), "--seeds", str(args.seeds),
              "--out", str(ev), "--no-progress"])
    assert rc == 0
    compare = read_json(ev / "compare.json")
    parts.append(
        f"**Held-out evaluation** (`mmbalance evaluate OUT/policy --seeds {args.seeds}`, seeds "
        f"{compare['seeds'][0]}..{compare['seeds'][-1]}, which no training episode used; the "
        f"policy's own budget of {env_config['train']['epochs']} epochs):\n\n"
        + (ev / "summary.md").read_text().split("\n\n", 1)[1].strip()
    )

    # 3. reward gaming under the pure discrepancy reward
    pure = {**env_config, "reward": {"discrepancy": 1.0}, "action_mode": "discrete"}

    def starve(strong: bool):
        def act(e):
            s_hat = e.trainer.status.s_hat
            lead = int(np.argmax(s_hat)) if strong else int(np.argmin(s_hat))
            a = np.full(len(e.modalities), len(e.actions.grid) - 1)
            a[lead] = 0
            return a
        return act

    gaming = {
        "uniform": fixed_policy_episodes(pure, lambda e: e.heuristic_action("uniform"),
                                         heur_seeds),
        "dus-h": fixed_policy_episodes(pure, lambda e: e.heuristic_action("dus-h"), heur_seeds),
        "starve the leader": fixed_policy_episodes(pure, starve(True), heur_seeds),
        "starve the laggard": fixed_policy_episodes(pure, starve(False), heur_seeds),
    }
    mods = QuotaEnv(pure).modalities
    parts.append(
        "**Reward gaming** (pure discrepancy reward, `reward: {discrepancy: 1}`; fixed "
        f"policies, {args.heuristic_episodes} episodes each): return, final D and accuracies.\n\n"
        + table(gaming, ["return", "final_D", "final_test_acc"]
                + [f"test_acc_{m}" for m in mods] + [f"mean_quota_{m}" for m in mods])
    )

    # 4. throughput
    env = QuotaEnv(env_config)
    env.reset(seed=30_000)
    fed, steps, t0 = 0, 0, time.perf_counter()
    env.timing = {"env_seconds": 0.0, "trainer_seconds": 0.0}
    for ep in range(2):
        env.reset(seed=30_000 + ep)
        done = False
        while not done:
            _, _, term, trunc, info = env.step(env.heuristic_action("uniform"))
            steps += 1
            fed += sum(info[f"quota_{m}"] for m in env.modalities) * env.cfg.steps_per_action
            done = term or trunc
    wall = time.perf_counter() - t0
    outside = 1 - env.timing["trainer_seconds"] / env.timing["env_seconds"]
    parts.append(
        f"**Env throughput** (one QuotaEnv, {env_config['train']} on `{env_config['data']}`, "
        f"{env_config['steps_per_action']} training iterations per env step, uniform actions, "
        f"2 episodes): {steps / wall:.2f} env steps/s, {fed / wall:.0f} training samples/s "
        f"(unimodal samples fed); share of env-step time outside the trainer (observation, "
        f"reward, action mapping): {100 * outside:.2f}% (target < 5%)."
    )
    text = "\n\n".join(parts) + "\n"
    write_result("rl", text)


if __name__ == "__main__":
    main()
