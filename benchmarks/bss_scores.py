"""Do BSS-L's cheap scores rank samples as a fresh scoring pass does?

`bss-l:score=forward` reuses each sample's balance terms from the previous epoch's training
forward pass (no extra pass); the authors (and `score=pass`, the default) score every
sample with a no-grad pass before the epoch. At every epoch boundary this measures, for
the same model, the Spearman correlation between the balance degree d from the forward
pass and from a fresh pass, and between the forward d and the position at which the sample
was trained in the epoch just ended (a sample trained late was scored by a later model:
the order then feeds on itself). Writes `results/bss_scores.md`.
Usage: python benchmarks/bss_scores.py [--seeds 3] [--epochs 10]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import header, invocation, write_result
from scipy.stats import spearmanr

DATA = {"synthetic": {}, "synthetic:preset=competition": {"lr": 0.003}}


def measure(data: str, train: dict, seed: int, epochs: int) -> list[tuple[float, float]]:
    import torch

    from mmbalance.data.registry import load_dataset
    from mmbalance.policies.bss_measure import balance_degree
    from mmbalance.policies.registry import make_sampler
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    torch.set_num_threads(1)
    tr = Trainer(load_dataset(data), TrainConfig(method="joint", epochs=epochs, seed=seed,
                                                  probe=False, **train),
                 make_sampler("bss-l:score=forward"))
    out = []
    while not tr.done:
        while tr.step(stop_at_epoch_end=True) is not None:
            pass
        if tr.done:
            break
        s = tr.sampler
        cheap = balance_degree(s._sim, s._loss)
        fresh = balance_degree(*tr.score_train())
        position = np.empty(len(s._order))
        position[s._order] = np.arange(len(s._order))
        out.append((float(spearmanr(cheap, fresh).statistic),
                    float(spearmanr(cheap, position).statistic)))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    blocks = []
    for data, train in DATA.items():
        per_seed = np.array([measure(data, train, seed, args.epochs)
                             for seed in range(args.seeds)])
        head = ("| epoch boundary | Spearman(forward d, fresh d) | Spearman(forward d, position "
                "in the epoch) |")
        lines = [head, "|---|---|---|"]
        for e in range(per_seed.shape[1]):
            fresh, pos = per_seed[:, e, 0], per_seed[:, e, 1]
            lines.append(f"| after epoch {e} | {fresh.mean():.2f} ± {fresh.std():.2f} | "
                         f"{pos.mean():+.2f} ± {pos.std():.2f} |")
        opts = ", ".join(f"{k}={v}" for k, v in train.items()) or "defaults"
        blocks.append(f"`{data}`, method joint ({opts}), {args.seeds} seeds, mean ± std:\n\n"
                      + "\n".join(lines))
    write_result("bss_scores", f"{header(invocation())}\n\n" + "\n\n".join(blocks) + "\n")


if __name__ == "__main__":
    main()
