"""RLlib callback that logs the multimodal run's metrics at each episode's end.

They land under `env_runners/mml/...` in every RLlib result (and so in TensorBoard and Tune):
the final training discrepancy, the final validation accuracy (multimodal and per modality)
of the run's best epoch, its test accuracy for reporting, and its compute ledger
(`final_ledger_<key>`: under `share` every quota policy's encoder updates and gradient
samples are the uniform run's, and this shows it).
"""

from __future__ import annotations

import numbers

from ray.rllib.callbacks.callbacks import RLlibCallback


class MMLMetricsCallback(RLlibCallback):
    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:
        if metrics_logger is None:
            return
        infos = episode.get_infos()
        if not infos:
            return
        last = infos[-1]
        for key, value in last.items():
            # numbers.Real: RLlib hands back an info's ints as numpy integers (the ledger's
            # counts), which are not `int`
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and (
                key == "discrepancy"
                or key.startswith(("final_val_", "final_test_", "final_ledger_"))
            ):
                metrics_logger.log_value(f"mml/{key}", float(value), reduce="mean", window=20)
