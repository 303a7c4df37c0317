"""RL benchmark: learning a sampling policy with several algorithms under the paired reward.

Everything runs from the shipped YAMLs (`tune_configs/dus_{ppo,sac,dqn}.yaml`,
`bss_ppo.yaml`: a family of competition data sets drawn per episode, joint-uni runs, the
reward = the validation-accuracy advantage over a same-seed reference run), made lighter so
the benchmark fits a 2-core machine (OVERRIDES: 1000 training samples, 8-epoch runs, a
decision every 10 iterations); in that setting feeding the weak modality B/4 + 2B beats DUS-H,
so there is a better policy than the heuristic to find.

1. Reward gaming: fixed policies (uniform, DUS-H, starve the leader, starve the laggard) in
   the env, under the paired reward and under the pure discrepancy reward: does the ranking
   by return agree with the ranking by held-out (test) accuracy?
2. Cost of the paired reward per env step against the same env without it.
3. Per algorithm (PPO, SAC, DQN, APPO, IMPALA on the quota env; PPO on the BSS sequence env;
   the ablation PPO-pay-step, PPO with the paired advantage paid at every decision; and
   PPO-ASHA, the shipped ASHA sweep with SWEEP_TRIALS trials of that budget, whose best
   trial's exported policy is evaluated), the same env-step budget: learning curve, wall
   time, env steps/s; then held-out seeds of the family's centre and of `digits`, which no
   episode saw, against the policies that need no RL: uniform, DUS-H, DUS-RL, the best
   fixed share, the best two-phase schedule and PBT over the share (each found on the
   evaluation data's validation split; trained once per setting and shared by every quota
   policy), BSS: uniform, BSS-H, BSS-L. The bar of the RL issue, by the seed-paired
   difference in test accuracy: on the family, more than one std better than every
   baseline (a win is re-evaluated on fresh seeds before it is claimed); on `digits`, not
   below uniform by more than half a std. The search cost (training runs and iterations)
   of every policy, learning included.
Writes results/rl.md, rl_claims.md and rl_curve.png (`--name`: another name); raw runs under
results/raw/rl (not committed;
`--algorithms X` re-learns X only and keeps the others' raw results for the block).
Usage: python benchmarks/rl.py [--env-steps 2048] [--seeds 5] [--algorithms PPO SAC ...]
       [--family DATA --centre DATA] [--set KEY=VALUE ...]
       python benchmarks/rl.py --tables-only   (rebuild results/rl.md from results/raw/rl)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from _common import RESULTS, commit, header, invocation, write_result

from mmbalance.cli import main as cli
from mmbalance.envs import QuotaEnv
from mmbalance.policies.signals import RewardConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"PPO": "tune_configs/dus_ppo.yaml", "SAC": "tune_configs/dus_sac.yaml",
           "DQN": "tune_configs/dus_dqn.yaml", "APPO": "tune_configs/dus_appo.yaml",
           "IMPALA": "tune_configs/dus_impala.yaml", "BSS": "tune_configs/bss_ppo.yaml",
           "PPO-pay-step": "tune_configs/dus_ppo.yaml",
           "PPO-ASHA": "tune_configs/sweep_ppo_asha.yaml"}
# a shipped sweep, run at the benchmark's budget per trial; its best trial's policy is
# evaluated as a learned one (its search cost counts every trial)
SWEEPS = {"PPO-ASHA"}
SWEEP_TRIALS = 4
# the ablation: the paired advantage paid at every decision instead of at the end
ABLATIONS = {"PPO-pay-step": ["env_config.reward.pay=step"]}
FAMILY = "synthetic:preset=competition,n_train=1000,separation=5..7/3..5,informative=0.7..0.9/1"
OVERRIDES = [
    f"env_config.data={FAMILY}",
    "env_config.train.epochs=8",
    "env_config.steps_per_action=10",
]
PER_ALGO = {"PPO": ["training.train_batch_size_per_learner=128", "training.minibatch_size=32"],
            # the asynchronous PPOs at PPO's batch, sampling on the local env runner: remote
            # runners take longer to start than an iteration lasts on two cores (an
            # iteration then returns with nothing sampled), and each iteration waits for
            # a batch's env steps, so the budget is PPO's
            "APPO": ["training.train_batch_size_per_learner=128", "env_runners.num_env_runners=0",
                     "reporting.min_sample_timesteps_per_iteration=128"],
            "IMPALA": ["training.train_batch_size_per_learner=128",
                       "env_runners.num_env_runners=0",
                       "reporting.min_sample_timesteps_per_iteration=128"]}
# held-out data: the centre of the training family, and a data set no episode drew
EVAL_DATA = {"centre": "synthetic:preset=competition,n_train=1000", "digits": "digits"}
FIXED_SEEDS = list(range(20_000, 20_005))  # episodes of the fixed policies (training range)
FRESH_SEED = 2000  # first seed of the confirmation (evaluation uses 1000..)
# what a learned quota policy is measured against (a sequence policy: uniform, BSS-H)
BASELINES = ["uniform", "dus-h", "bss-h", "fixed:best", "schedule:best", "pbt:share"]
# a quota policy's baselines that do not depend on it: trained once per evaluation setting
# (with the chosen rows fixed:best, schedule:best and pbt:share) for every algorithm
SHARED = ["uniform", "dus-h", "dus-rl"]


def config(name: str) -> tuple[dict, list[str]]:
    """A shipped YAML with the benchmark's overrides, and the --set flags that give it
    (the sequence env decides per epoch: no steps_per_action)."""
    from mmbalance.tune.learn_config import apply_overrides

    cfg = yaml.safe_load((ROOT / CONFIGS[name]).read_text())
    sets = [o for o in OVERRIDES if not (name == "BSS" and "steps_per_action" in o)]
    if name != "BSS":
        sets += PER_ALGO.get(cfg["algorithm"], [])
    sets += ABLATIONS.get(name, [])
    return apply_overrides(cfg, sets), sets


def env_steps_per_iteration(cfg: dict) -> int:
    if cfg["algorithm"] in ("PPO", "APPO", "IMPALA"):
        return int(cfg["training"]["train_batch_size_per_learner"])
    return int(cfg.get("reporting", {}).get("min_sample_timesteps_per_iteration", 1000))


def play(env, act, seed: int) -> dict:
    env.reset(seed=seed)
    done, quotas, info, rewards = False, [], {}, []
    while not done:
        _, r, term, trunc, info = env.step(act(env))
        rewards.append(r)
        quotas.append([info.get(f"quota_{m}", 0) for m in env.modalities])
        done = term or trunc
    row = {"return": sum(rewards), "final_test_acc": info["final_test_acc"], "rewards": rewards}
    row.update({f"probe_{m}": info[f"final_test_probe_acc_{m}"] for m in env.modalities})
    row.update({f"quota_{m}": float(np.mean([q[j] for q in quotas]))
                for j, m in enumerate(env.modalities)})
    return row


def starve(leader: bool):
    """All of the grid's top quota to one modality, the bottom to the other, chosen by the
    learning status (the leader = the higher ŝ)."""
    def act(env):
        s_hat = env.trainer.status.s_hat
        j = int(np.argmax(s_hat)) if leader else int(np.argmin(s_hat))
        a = np.full(len(env.modalities), len(env.actions.grid) - 1)
        a[j] = 0
        return a
    return act


def gaming(env_config: dict) -> tuple[str, dict]:
    policies = {"uniform": lambda e: e.heuristic_action("uniform"),
                "dus-h": lambda e: e.heuristic_action("dus-h"),
                "starve the leader": starve(True), "starve the laggard": starve(False)}
    shipped = env_config["reward"]
    rewards = {"paired (shipped)": shipped}
    if RewardConfig.from_dict(shipped).pay != "step":  # A is read per step only when paid so
        rewards["paired, paid per step"] = {**shipped, "pay": "step"}
    rewards["discrepancy only"] = {"discrepancy": 1.0}
    lines = ["| reward | policy | return | test acc | " + " | ".join(
        f"probe {m}" for m in ("audio", "visual")) + " | mean quota audio | mean quota visual |",
        "|" + "---|" * 8]
    agree, profile = {}, {}
    for rname, reward in rewards.items():
        env = QuotaEnv({**env_config, "data": EVAL_DATA["centre"], "pool": 0,
                        "reward": reward, "action_mode": "discrete"})
        played = {p: [play(env, act, s) for s in FIXED_SEEDS] for p, act in policies.items()}
        rows = {p: pd.DataFrame([{k: v for k, v in r.items() if k != "rewards"} for r in runs])
                .mean() for p, runs in played.items()}
        parsed = RewardConfig.from_dict(reward)
        if parsed.paired and parsed.pay == "step":
            n = min(len(r["rewards"]) for runs in played.values() for r in runs)
            profile[rname] = {p: np.mean([np.cumsum(r["rewards"][:n]) for r in runs], axis=0)
                              for p, runs in played.items()}
        for p, r in rows.items():
            lines.append(f"| {rname} | {p} | {r['return']:.2f} | {100 * r['final_test_acc']:.1f} "
                         f"| {100 * r['probe_audio']:.1f} | {100 * r['probe_visual']:.1f} | "
                         f"{r['quota_audio']:.0f} | {r['quota_visual']:.0f} |")
        by_return = sorted(rows, key=lambda p: rows[p]["return"])
        by_acc = sorted(rows, key=lambda p: rows[p]["final_test_acc"])
        agree[rname] = (by_return == by_acc, by_return, by_acc)
    for rname, curves in profile.items():  # the running advantage A after each decision
        n = len(next(iter(curves.values())))
        title = (f"Running advantage A (points) after each decision under the {rname} reward, "
                 "mean over the episodes (the per-step reward is its change):")
        lines += ["", title, "",
                  "| policy | " + " | ".join(str(k + 1) for k in range(n)) + " |",
                  "|" + "---|" * (n + 1)]
        lines += [f"| {p} | " + " | ".join(f"{v:+.1f}" for v in c[:n]) + " |"
                  for p, c in curves.items()]
    return "\n".join(lines), agree


def step_cost(env_config: dict) -> str:
    """Seconds per env step of one episode (uniform actions) without the paired term, with
    it on a first visit (the reference run trained beside) and on a cached set-up."""
    base = {**env_config, "data": EVAL_DATA["centre"], "pool": 0}
    out = {}
    for name, reward, episodes in (("no paired term", {"discrepancy": 1.0}, 2),
                                   ("paired, first visit", env_config["reward"], 1),
                                   ("paired, cached reference", env_config["reward"], 2)):
        env = QuotaEnv({**base, "reward": reward})
        times = []
        for ep in range(episodes):
            env.reset(seed=30_000)  # the same set-up: the second visit hits the cache
            done, n, t0 = False, 0, time.perf_counter()
            while not done:
                _, _, term, trunc, _ = env.step(env.heuristic_action("uniform"))
                n += 1
                done = term or trunc
            times.append((time.perf_counter() - t0) / n)
        out[name] = times[-1]
    ref = out["no paired term"]
    return "\n".join(["| env | s / env step | ratio |", "|---|---|---|"] + [
        f"| {k} | {v:.3f} | {v / ref:.2f}x |" for k, v in out.items()])


def evaluation_folders(raw: Path, algo: str, fresh: bool = False) -> dict[str, Path]:
    """Where `evaluate` writes an algorithm's held-out runs, per evaluation data set
    (`fresh`: the confirmation on seeds neither learning nor the first evaluation used)."""
    tail = "-confirm" if fresh else ""
    return {name: raw / algo / f"evaluate-{name}{tail}" for name in EVAL_DATA}


def evaluate(policy: Path, raw: Path, algo: str, seeds: int, fresh: bool = False,
             names: list[str] | None = None) -> None:
    """Held-out runs on each evaluation data set. A sequence policy: `mmbalance evaluate`.
    A quota policy: its own rows (replayed, DUS-RL from it, and uniform for the compute
    check), and the policies that need no RL (uniform, DUS-H, DUS-RL, the best fixed
    share, the best two-phase schedule, PBT over the share; found on the evaluation data's
    validation split) from a baseline folder shared by every policy with the same training
    settings and seeds, which `mmbalance evaluate POLICY --best-fixed --best-schedule --pbt`
    would train again for each."""
    from mmbalance.cli import learned_cost
    from mmbalance.compare import evaluation_setup, run_comparison

    first = FRESH_SEED if fresh else 1000
    for name, folder in evaluation_folders(raw, algo, fresh).items():
        if names is not None and name not in names:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        data, method, samplers, overrides, spec = evaluation_setup(str(policy),
                                                                   EVAL_DATA[name], {})
        if spec["env"] != "quota":
            rc = cli(["evaluate", str(policy), "--data", EVAL_DATA[name], "--seeds", str(seeds),
                      "--first-seed", str(first), "--out", str(folder), "--no-progress"])
            if rc != 0:
                raise SystemExit(rc)
            continue
        seed_list = list(range(first, first + seeds))
        base = baseline_folder(raw, data, method, overrides, seed_list)
        if not (base / "summary.parquet").exists():
            shutil.rmtree(base, ignore_errors=True)
            run_comparison(data, [(method, s) for s in SHARED], seed_list, overrides, base,
                           progress=False, best_fixed=True, best_schedule=True, pbt=True)
        own = [s for s in samplers if s not in SHARED] + ["uniform"]
        run_comparison(data, [(method, s) for s in own], seed_list, overrides, folder,
                       progress=False, learned_costs=learned_cost(spec, samplers[0]))
        (folder / "baselines.txt").write_text(f"{base.relative_to(raw)}\n")


def baseline_folder(raw: Path, data: str, method: str, overrides: dict,
                    seeds: list[int]) -> Path:
    """The shared baselines' folder of one evaluation setting (named by its hash)."""
    import hashlib

    key = json.dumps([data, method, overrides, seeds], sort_keys=True, default=str)
    return raw / "baselines" / hashlib.sha256(key.encode()).hexdigest()[:12]


def tables_of(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An evaluation's results and summary, with its shared baselines' where it has them
    (their rows replace its own of the same sampler: one run of each per seed)."""
    res = pd.read_parquet(folder / "results.parquet")
    summary = pd.read_parquet(folder / "summary.parquet")
    link = folder / "baselines.txt"
    if link.exists():
        base = folder.parents[1] / link.read_text().strip()
        b_res = pd.read_parquet(base / "results.parquet")
        b_sum = pd.read_parquet(base / "summary.parquet")
        res = pd.concat([res[~res["sampler"].isin(b_res["sampler"])], b_res])
        summary = pd.concat([summary[~summary["sampler"].isin(b_sum["sampler"])], b_sum])
    return res, summary


def paired(res: pd.DataFrame, learned: pd.DataFrame, sampler: str,
           col: str) -> tuple[float, float, int]:
    """Mean and std (points) of the learned row's seed-paired difference to `sampler`'s."""
    base = res[(res["sampler"] == sampler) & res.get("chosen", True)].set_index("seed")[col]
    mine = learned.set_index("seed")[col]
    d = 100 * (mine - base).dropna()
    return float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else math.nan, len(d)


def bar(folder: Path) -> dict:
    """The bar of the RL issue on one evaluation: the learned policy against every
    baseline, by the mean seed-paired difference in test accuracy against its std. On the
    training family it must beat each one by more than one std; on data no episode saw it
    must not fall below uniform by more than half a std."""
    res, summary = tables_of(folder)
    learned = res[res["sampler"].str.startswith("learned:")]
    cost = {r["sampler"]: (int(r["search_runs"]), float(r["search_steps"]))
            for _, r in summary.iterrows() if "search_runs" in summary}
    replays = next(v for k, v in cost.items() if k.startswith("learned:"))
    out = {"acc": 100 * learned["test_acc"].mean(), "acc_std": 100 * learned["test_acc"].std(),
           "seeds": sorted(int(s) for s in learned["seed"]), "replays": replays,
           "baselines": {}}
    for b in BASELINES:
        if not (res["sampler"] == b).any():
            continue
        mean, std, n = paired(res, learned, b, "test_acc")
        out["baselines"][b] = {"diff": mean, "std": std, "n": n,
                               "search": cost.get(b, (0, 0.0))}
    return out


def met(result: dict, unseen: bool) -> bool:
    if unseen:
        u = result["baselines"].get("uniform")
        return u is not None and u["diff"] >= -0.5 * (u["std"] if math.isfinite(u["std"]) else 0)
    return all(v["diff"] > v["std"] for v in result["baselines"].values()
               if math.isfinite(v["std"]))


def bar_cells(algo: str, name: str, result: dict, unseen: bool) -> str:
    cells = [algo, name, f"{result['acc']:.1f} ± {result['acc_std']:.1f}"]
    for b in BASELINES:
        v = result["baselines"].get(b)
        cells.append("-" if v is None else f"{v['diff']:+.1f} ± {v['std']:.1f}")
    rule = "not below uniform by > std/2" if unseen else "beats every baseline by > 1 std"
    return "| " + " | ".join(cells) + f" | {rule}: {'yes' if met(result, unseen) else 'no'} |"


def sweep(algo: str, env_steps: int, out: Path) -> int:
    """A shipped PPO sweep at the benchmark's settings: SWEEP_TRIALS trials of PPO's batch,
    each for about `env_steps` env steps (ASHA may stop a weak one earlier); its best
    trial's exported policy goes to `out/policy` and that trial's curve to
    `out/progress.parquet`, as a learn run's. Returns the iterations per trial."""
    batch = 128
    iterations = max(1, round(env_steps / batch))
    sets = [f"base.{o}" for o in OVERRIDES if "steps_per_action" not in o]  # searched
    sets += [f"base.{o}" for o in PER_ALGO["PPO"]]
    sets += [f"stop.training_iteration={iterations}", f"scheduler.max_t={iterations}",
             f"scheduler.grace_period={max(1, iterations // 4)}"]
    folder = out / "sweep"
    rc = cli(["sweep", str(ROOT / CONFIGS[algo]), "--num-samples", str(SWEEP_TRIALS),
              "--out", str(folder), "--no-progress", *[a for o in sets for a in ("--set", o)]])
    if rc != 0 or not (folder / "best_policy").is_dir():
        raise SystemExit(rc or 1)
    shutil.copytree(folder / "best_policy", out / "policy")
    results = pd.read_parquet(folder / "results.parquet")
    best = results.sort_values("env_runners/episode_return_mean", ascending=False)["trial"]
    trials = pd.read_parquet(folder / "trials.parquet")
    curve = trials[trials["trial"] == best.iloc[0]].rename(columns={
        "env_runners/num_env_steps_sampled_lifetime": "env_steps",
        "env_runners/episode_return_mean": "episode_return_mean"})
    curve[["env_steps", "episode_return_mean"]].to_parquet(out / "progress.parquet")
    return iterations


def measure(args: argparse.Namespace, raw: Path) -> None:
    """Run everything and keep each live measurement under RAW (the tables are built from
    there, so `--tables-only` can rebuild them)."""
    raw.mkdir(parents=True, exist_ok=True)
    env_config = config("PPO")[0]["env_config"]
    t0 = time.perf_counter()
    table, agree = gaming(env_config)
    verdict = "; ".join(f"{k}: ranking by return {'agrees' if a else 'does NOT agree'} with "
                        f"the ranking by test accuracy (return: {' < '.join(r)}; accuracy: "
                        f"{' < '.join(acc)})" for k, (a, r, acc) in agree.items())
    text = (f"**Reward gaming** (fixed policies in the shipped quota env on "
            f"`{EVAL_DATA['centre']}`, {len(FIXED_SEEDS)} episodes each, seeds "
            f"{FIXED_SEEDS[0]}..{FIXED_SEEDS[-1]}; {(time.perf_counter() - t0) / 60:.1f} min). "
            f"Return, test accuracy of the best-validation model and probe accuracies (%), "
            f"mean quotas.\n\n{table}\n\n{verdict}.")
    (raw / "gaming.md").write_text(text)
    print(text, flush=True)
    text = ("**Cost of the paired reward** (one episode, uniform actions, shipped settings on "
            f"`{EVAL_DATA['centre']}`):\n\n{step_cost(env_config)}")
    (raw / "cost.md").write_text(text)
    print(text, flush=True)
    for algo in args.algorithms:
        out = raw / f"learn-{algo}"
        for folder in (out, raw / algo):  # only this algorithm's earlier results are replaced
            shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        if algo in SWEEPS:
            iterations = sweep(algo, args.env_steps, out)
        else:
            cfg, sets = config(algo)
            iterations = max(1, round(args.env_steps / env_steps_per_iteration(cfg)))
            rc = cli(["learn", str(ROOT / CONFIGS[algo]), "--iterations", str(iterations),
                      "--out", str(out), "--no-progress",
                      *[a for o in sets for a in ("--set", o)]])
            if rc != 0:
                raise SystemExit(rc)
        (out / "wall.json").write_text(json.dumps(
            {"iterations": iterations, "minutes": (time.perf_counter() - t0) / 60,
             "run": f"`{invocation()}` on {time.strftime('%Y-%m-%d')}, commit {commit()}"}))
        evaluate(out / "policy", raw, algo, args.seeds)
        # a win on the family is confirmed on fresh seeds before it is claimed
        centre = evaluation_folders(raw, algo)["centre"]
        if met(bar(centre), unseen=False):
            evaluate(out / "policy", raw, algo, args.seeds, fresh=True, names=["centre"])


def tables(args: argparse.Namespace, raw: Path) -> str:
    head = header(invocation())
    if args.tables_only:  # the measuring run's command, commit and date stay
        head = ((RESULTS / f"{args.name}.md").read_text().split("\n", 1)[0]
                + f" Tables rebuilt from its raw results by `{invocation()}`.")
    parts = [head, (raw / "gaming.md").read_text(), (raw / "cost.md").read_text()]
    curves, rows, bars, held_out, claims, costs = {}, [], [], [], [], []
    shared: dict[str, str] = {}
    runs: dict[str, list[str]] = {}  # which run of this benchmark measured each algorithm
    for algo, cfg_path in CONFIGS.items():  # every one measured, by this run or an earlier one
        out = raw / f"learn-{algo}"
        if not (out / "wall.json").exists():
            continue
        wall = json.loads((out / "wall.json").read_text())
        progress = pd.read_parquet(out / "progress.parquet")
        steps = int(progress["env_steps"].iloc[-1])
        curves[algo] = progress
        shown = f"`{cfg_path}`" + "".join(f" `--set {o}`" for o in ABLATIONS.get(algo, []))
        runs.setdefault(wall.get("run", "an earlier run (not recorded)"), []).append(algo)
        rows.append(f"| {algo} | {shown} | {wall['iterations']} | {steps} | "
                    f"{wall['minutes']:.1f} | {steps / (60 * wall['minutes']):.1f} | "
                    f"{progress['episode_return_mean'].iloc[-1]:.2f} |")
        for name, folder in evaluation_folders(raw, algo).items():
            unseen = name != "centre"
            result = bar(folder)
            bars.append(bar_cells(algo, name, result, unseen))
            confirm = evaluation_folders(raw, algo, fresh=True)[name]
            confirmed = None
            if (confirm / "results.parquet").exists():
                again = bar(confirm)
                bars.append(bar_cells(algo, f"{name}, fresh seeds {again['seeds']}", again,
                                      unseen))
                confirmed = met(again, unseen)
            claims.append(claim(algo, name, result, unseen, confirmed))
            costs.append(cost_line(algo, name, result, out / "policy"))
            summary = (folder / "summary.md").read_text().split("\n\n", 1)[1].strip()
            link = folder / "baselines.txt"
            if link.exists():
                held_out.append(f"**{algo}, held-out `{EVAL_DATA[name]}`** (its own rows; "
                                f"the baselines: `{link.read_text().strip()}` below):\n\n"
                                + summary)
                shared[link.read_text().strip()] = name
            else:
                held_out.append(f"**{algo}, held-out `{EVAL_DATA[name]}`** (`mmbalance "
                                f"evaluate OUT/policy --data {EVAL_DATA[name]} --seeds "
                                f"{args.seeds}`):\n\n" + summary)
    for rel, name in shared.items():
        summary = (raw / rel / "summary.md").read_text().split("\n\n", 1)[1].strip()
        held_out.append(f"**Baselines `{rel}`, held-out `{EVAL_DATA[name]}`** (the policies "
                        "that need no RL, shared by every quota policy evaluated there; as "
                        "`mmbalance evaluate POLICY --best-fixed --best-schedule --pbt` trains "
                        "them):\n\n" + summary)
    fig, ax = plt.subplots(figsize=(7, 4))
    for algo, prog in curves.items():
        ax.plot(prog["env_steps"], prog["episode_return_mean"], marker="o", label=algo)
    ax.axhline(0.0, color="gray", linestyle="--", label="the reference (uniform): 0")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return = final val-acc advantage (points)")
    ax.set_title("Learning a sampling policy under the paired reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.name}_curve.png", dpi=120)
    plt.close(fig)
    shown = " ".join(f"--set {o}" for o in OVERRIDES)
    if len(runs) > 1 or args.tables_only:
        parts.append("Each algorithm's rows were measured by: " + "; ".join(
            f"{', '.join(algos)}: {run}" for run, algos in runs.items()) + ".")
    parts.append("**Learning** (each algorithm from its shipped YAML with `--iterations` set for "
                 f"about {args.env_steps} env steps and `{shown}`; PPO also "
                 f"`{' '.join('--set ' + o for o in PER_ALGO['PPO'])}`):\n\n"
                 f"![learning curves](benchmarks/results/{args.name}_curve.png)\n\n"
                 "| algorithm | config | iterations | env steps | minutes | env steps / s "
                 "| last mean return |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    head = " | ".join(f"vs {b}" for b in BASELINES)
    parts.append("**The bar** (the learned policy's test accuracy on held-out seeds, and its "
                 "seed-paired difference to each baseline, mean ± std in points; the policies "
                 "that need no RL are found on the evaluation data's validation split: "
                 "`fixed:best` from 5 constant shares, `schedule:best` from the two-phase "
                 "grid, `pbt:share` by PBT with 4 runs per seed):\n\n"
                 f"| algorithm | data | learned acc | {head} | met |\n"
                 "|---|---|---|" + "---|" * len(BASELINES) + "---|\n" + "\n".join(bars))
    parts.append("**Search cost** (training runs and training iterations spent to find each "
                 "policy, per evaluated seed; a learned policy's learning episodes each also "
                 "train a paired reference run):\n\n| algorithm | data | "
                 + " | ".join(["learned", *BASELINES]) + " |\n|---|---|"
                 + "---|" * (1 + len(BASELINES)) + "\n" + "\n".join(costs))
    write_result(f"{args.name}_claims", "\n".join(f"- {c}" for c in claims) + "\n")
    return "\n\n".join(parts + held_out) + "\n"


def claim(algo: str, name: str, result: dict, unseen: bool, confirmed: bool | None) -> str:
    """One generated line for the README: does the learned policy beat the best policy
    that needs no RL (or, on unseen data, hold against uniform)?"""
    where = f"`{EVAL_DATA[name]}`"
    if unseen:
        u = result["baselines"].get("uniform", {"diff": math.nan, "std": math.nan})
        verdict = "holds against" if met(result, True) else "falls below"
        return (f"{algo} on unseen {where}: {verdict} uniform ({u['diff']:+.1f} ± "
                f"{u['std']:.1f} points; bar: within half a std).")
    free = {b: v for b, v in result["baselines"].items() if b != "uniform"}
    best = min(free, key=lambda b: free[b]["diff"]) if free else None
    if best is None:
        return f"{algo} on {where}: no baseline was run."
    v = free[best]
    won = met(result, False)
    text = (f"{algo} on {where}: {'**beats**' if won else 'does not beat'} every policy "
            f"that needs no RL by more than one std (hardest: {best}, "
            f"{v['diff']:+.1f} ± {v['std']:.1f} points)")
    if won:
        text += ("; confirmed on fresh seeds" if confirmed else
                 "; NOT confirmed on fresh seeds" if confirmed is False else
                 "; not yet confirmed on fresh seeds")
    return text + "."


def cost_line(algo: str, name: str, result: dict, policy: Path) -> str:
    """Per evaluated seed, what finding each policy cost in training runs and iterations:
    the learned one its learning (every episode a run) and its own replays."""
    n = max(1, len(result["seeds"]))
    learned = json.loads((policy / "policy.json").read_text()).get("learned_with", {})
    runs = result["replays"][0] + learned.get("episodes", 0)
    steps = result["replays"][1] + learned.get("iterations", 0)
    cells = [algo, name, f"{runs / n:.1f} runs, {steps / n:.0f} it"]
    for b in BASELINES:
        v = result["baselines"].get(b)
        cells.append("-" if v is None else
                     f"{v['search'][0] / n:.1f} runs, {v['search'][1] / n:.0f} it")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env-steps", type=int, default=2048, help="budget per algorithm")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--algorithms", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                   help="the algorithms to (re)learn; the block shows every one under raw/rl")
    p.add_argument("--tables-only", action="store_true",
                   help="rebuild results/rl.md from results/raw/rl without running anything")
    p.add_argument("--name", default="rl", help="the results' name: results/NAME.md, "
                   "NAME_claims.md, NAME_curve.png, raw/NAME (another family: another name)")
    p.add_argument("--family", help=f"the data family episodes draw from (default {FAMILY})")
    p.add_argument("--centre", help="the family's centre, evaluated on held-out seeds "
                   f"(default {EVAL_DATA['centre']})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="another override of every learn config, e.g. env_config.train.lr=0.03")
    args = p.parse_args()
    if args.family:
        OVERRIDES[0] = f"env_config.data={args.family}"
    if args.centre:
        EVAL_DATA["centre"] = args.centre
    OVERRIDES.extend(args.set)
    raw = RESULTS / "raw" / args.name
    if not args.tables_only:
        measure(args, raw)
    write_result(args.name, tables(args, raw))


if __name__ == "__main__":
    main()
