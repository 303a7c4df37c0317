"""`mmbalance sweep CONFIG.yaml`: Tune sweeps over the plain trainer or RLlib policy learning.

```yaml
name: dus_h_grid
trainable: train            # train (the plain trainer + a sampler) | learn (RLlib on an env)
base:                       # train: {data, method, sampler, sampler_options, train, seed}
  data: synthetic           # learn: a `mmbalance learn` config (algorithm, env, env_config...)
  method: mla
  sampler: dus-h
  train: {epochs: 20}
search_space:               # dotted keys into base -> DSL (see search_space.py)
  sampler_options.strength: {grid: [1, 4, 8]}
  train.lr: {loguniform: [0.003, 0.03]}
scheduler: {type: asha, max_t: 20, grace_period: 4, reduction_factor: 2}  # fifo | asha | pbt
search: {type: optuna}      # optional (pip install optuna); not with grid entries
metric: val_acc
mode: max
num_samples: 2
max_concurrent: 2
resources: {cpu: 1, gpu: 0} # per trial (train); RLlib trials ask what their config needs
stop: {training_iteration: 20}
storage: null               # a folder or a URI pyarrow opens (s3://...); default: --out;
                            # on several machines: shared (NFS, s3://...), else refused
max_failures: 1             # retries of a crashed trial, from its last checkpoint
keep_checkpoints: null      # checkpoints kept per trial; null = all (see below)
tracking: null              # mlflow: one MLflow run per trial (Tune's MLflowLoggerCallback;
tracking_uri: null          #   pip install 'mmbalance[tracking]'); default store <out>/mlruns
max_wait_s: 600             # trials waiting, none running this long: the sweep ends (exit 2)
```

Everything is validated before Ray starts. The output folder gets `sweep.yaml`,
`results.parquet` (one row per trial: config and last metrics), `trials.parquet` (every
reported row of every trial), `summary.md` (best trial first) and Tune's experiment folder
(`<storage>/<name>`, with each trial's TensorBoard events: Tune's TBXLoggerCallback), from
which `--resume` continues an interrupted sweep (docs/tracking.md).

A sweep stays in its place: `name` is a plain name (no '/' or '..'), and a storage location
that already holds an experiment of that name is refused, unless it is this sweep's own
resume (the experiment folder and the sweep folder share a `sweep_id`), so a second sweep
never writes into a first one's experiment. Trial checkpoints (plain and RLlib trials) are
signed with the sweep id (`mmbalance/manifest.py`) and verified before a trial restores from
one; Tune's own state (`tuner.pkl`, the experiment and searcher state) is signed into
`<out>/tune_state/` and only that signed copy is restored (`guard.py`, docs/mistakes.md).

Every trial checkpoints after each epoch (train) or iteration (learn). By default all are
kept: Tune snapshots its experiment state only every few seconds, so after a hard kill the
snapshot can name a checkpoint that a smaller `keep_checkpoints` had already deleted, and
that trial could not resume (PBT also exploits older checkpoints). Set `keep_checkpoints`
(>= 2) only where disk is short.

One module per job: `config.py` (the YAML and its checks), `run.py` (the Tune wiring, the
experiment's storage), `results.py` (the tables).
"""

from mmbalance.tune.sweep.config import SweepConfig, expand_grid
from mmbalance.tune.sweep.results import write_results
from mmbalance.tune.sweep.run import (
    SWEEP_ID,
    check_storage,
    require_shared_storage,
    run_sweep,
    shared_dataset,
)

__all__ = ["SWEEP_ID", "SweepConfig", "check_storage", "expand_grid", "require_shared_storage",
           "run_sweep", "shared_dataset", "write_results"]
