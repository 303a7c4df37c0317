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
```

Everything is validated before Ray starts. The output folder gets `sweep.yaml`,
`results.parquet` (one row per trial: config and last metrics), `trials.parquet` (every
reported row of every trial), `summary.md` (best trial first) and Tune's experiment folder
(`<storage>/<name>`), from which `--resume` continues an interrupted sweep.

A sweep stays in its place: `name` is a plain name (no '/' or '..'), and a storage location
that already holds an experiment of that name is refused, unless it is this sweep's own
resume (the experiment folder and the sweep folder share a `sweep_id`), so a second sweep
never writes into a first one's experiment. Trial checkpoints of plain-trainer sweeps are
signed (`mmbalance/manifest.py`) and verified before a trial restores from one.

Every trial checkpoints after each epoch (train) or iteration (learn). By default all are
kept: Tune snapshots its experiment state only every few seconds, so after a hard kill the
snapshot can name a checkpoint that a smaller `keep_checkpoints` had already deleted, and
that trial could not resume (PBT also exploits older checkpoints). Set `keep_checkpoints`
(>= 2) only where disk is short.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmbalance.errors import ConfigError, UserError
from mmbalance.spec import YamlConfig, typed_value
from mmbalance.tune import search_space as dsl

TRAINABLES = ("train", "learn")
SCHEDULERS = {
    "fifo": [],
    "asha": ["max_t", "grace_period", "reduction_factor", "brackets"],
    "pbt": ["perturbation_interval", "resample_probability", "quantile_fraction"],
}
SEARCHERS = ("optuna",)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SWEEP_ID = "sweep_id"  # in the sweep folder and in its Tune experiment folder: who owns it
TRAIN_BASE_TYPES = {"data": str, "method": str, "sampler": str, "sampler_options": dict,
                    "train": dict, "seed": int, "fault": dict}
TRAIN_BASE_KEYS = tuple(TRAIN_BASE_TYPES)


@dataclass
class SweepConfig(YamlConfig):
    config_name = "sweep config"

    name: str = "sweep"
    trainable: str = "train"
    base: dict = field(default_factory=dict)
    search_space: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=lambda: {"type": "fifo"})
    search: dict | None = None
    metric: str = "val_acc"
    mode: str = "max"
    num_samples: int = 1
    max_concurrent: int = 0
    resources: dict = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    stop: dict = field(default_factory=dict)
    storage: str | None = None
    max_failures: int = 1
    keep_checkpoints: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        if not NAME.fullmatch(self.name) or ".." in self.name:
            raise ConfigError(f"name: {self.name!r} must be a plain name (letters, digits, "
                              "'.', '_', '-'; no '/' and no '..'): Tune writes <storage>/<name>")
        if self.trainable not in TRAINABLES:
            raise ConfigError(f"trainable: got {self.trainable!r}, allowed {list(TRAINABLES)}")
        if self.mode not in ("max", "min"):
            raise ConfigError(f"mode: got {self.mode!r}, allowed ['max', 'min']")
        if self.num_samples < 1 or self.max_concurrent < 0 or self.max_failures < 0:
            raise ConfigError("num_samples >= 1, max_concurrent >= 0, max_failures >= 0 required")
        if self.keep_checkpoints is not None and (
                not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 2):
            raise ConfigError(f"keep_checkpoints: got {self.keep_checkpoints!r}, allowed null "
                              "(keep all) or an integer >= 2")
        kind = (self.scheduler or {}).get("type", "fifo")
        if kind not in SCHEDULERS:
            raise ConfigError(f"scheduler.type: got {kind!r}, allowed {list(SCHEDULERS)}")
        bad = sorted(set(self.scheduler) - {"type", *SCHEDULERS[kind]})
        if bad:
            raise ConfigError(f"scheduler: {kind} does not take {bad}; allowed: "
                              f"{SCHEDULERS[kind]}")
        for key, value in self.scheduler.items():
            if key != "type" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value > 0):
                raise ConfigError(f"scheduler.{key}: must be a number > 0, got {value!r}")
        if self.search is not None:
            if self.search.get("type") not in SEARCHERS:
                raise ConfigError(f"search.type: got {self.search.get('type')!r}, allowed "
                                  f"{list(SEARCHERS)}")
            if any("grid" in spec for spec in self.search_space.values()):
                raise ConfigError("search: a search algorithm cannot take 'grid' entries; "
                                  "use choice")
        if kind == "pbt" and any("grid" in spec for spec in self.search_space.values()):
            raise ConfigError("scheduler pbt: mutations cannot be 'grid' entries; use choice")
        self.check_resources()
        for key, value in self.stop.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"stop.{key}: must be a number (stop when the metric reaches "
                                  f"it), got {value!r}")
        if not self.search_space:
            raise ConfigError("search_space: empty; give at least one key to sweep")
        for key, spec in self.search_space.items():
            dsl.check_entry(key, spec)
        # every value each key can take must give a valid base config
        for key, spec in self.search_space.items():
            for value in dsl.all_values(spec):
                trial = self.sample_base()
                dsl.set_path(trial, key, value)
                self.check_base(trial, key)

    def check_resources(self) -> None:
        """Per-trial resources, checked here rather than by Ray after it has started."""
        bad = sorted(set(self.resources) - {"cpu", "gpu"}, key=str)
        if bad:
            raise ConfigError(f"resources: unknown {bad}; allowed: ['cpu', 'gpu']")
        for key, value in self.resources.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0):
                raise ConfigError(f"resources.{key}: must be a number >= 0, got {value!r}")
            if value > 1 and not float(value).is_integer():
                raise ConfigError(f"resources.{key}: a fraction must be at most 1 (Ray shares "
                                  f"one unit), more must be whole, got {value}")
        if not any(self.resources.get(k, d) for k, d in (("cpu", 1), ("gpu", 0))):
            raise ConfigError("resources: a trial needs some cpu or gpu, got none")

    def sample_base(self) -> dict:
        base = copy.deepcopy(self.base)
        for key, spec in self.search_space.items():
            dsl.set_path(base, key, dsl.representative(spec))
        return base

    def check_base(self, base: dict, key: str = "") -> None:
        where = f" (with search_space.{key})" if key else ""
        try:
            if self.trainable == "learn":
                from mmbalance.tune.learn_config import LearnConfig

                LearnConfig.from_dict(base)
                return
            unknown = sorted(set(base) - set(TRAIN_BASE_KEYS))
            if unknown:
                raise ConfigError(f"base: unknown key(s) {unknown}; allowed: "
                                  f"{list(TRAIN_BASE_KEYS)}")
            from mmbalance.policies.registry import make_sampler
            from mmbalance.trainers.config import TrainConfig
            from mmbalance.tune.trainables import _sampler_spec

            for k, v in base.items():
                typed_value("base", k, v, TRAIN_BASE_TYPES[k])

            TrainConfig.from_dict({**base.get("train", {}), "method": base.get("method", "joint"),
                                   "seed": base.get("seed", 0)})
            make_sampler(_sampler_spec(base.get("sampler", "uniform"),
                                       base.get("sampler_options", {})))
        except ConfigError as exc:
            raise ConfigError(f"{exc}{where}") from None

    def grid_size(self) -> int:
        sizes = [len(s["grid"]) for s in self.search_space.values() if "grid" in s]
        return math.prod(sizes) if sizes else 1


# ---------------------------------------------------------------------- running
def _param_space(cfg: SweepConfig, dataset_ref):
    space = copy.deepcopy(cfg.base)
    for key, spec in cfg.search_space.items():
        dsl.set_path(space, key, dsl.to_tune(spec))
    if cfg.trainable == "train":
        return space
    from mmbalance.tune.algos import build_algorithm_config
    from mmbalance.tune.learn_config import LearnConfig

    learn = LearnConfig(**{k: v for k, v in space.items()})  # validated via check_base
    env_config = dict(learn.env_config)
    if dataset_ref is not None:
        env_config["data"] = dataset_ref
    return build_algorithm_config(learn, env_config)


def _trainable(cfg: SweepConfig, dataset, trust_unsigned: bool = False):
    from ray import tune

    if cfg.trainable == "learn":
        return _algo_class(cfg)
    from mmbalance.tune.trainables import plain_trial

    fn = tune.with_parameters(plain_trial, dataset=dataset, trust_unsigned=trust_unsigned)
    res = {"cpu": float(cfg.resources.get("cpu", 1)), "gpu": float(cfg.resources.get("gpu", 0))}
    return tune.with_resources(fn, res)


def _algo_class(cfg: SweepConfig):
    from mmbalance.tune.learn_config import algorithm_config_class

    return algorithm_config_class(cfg.base.get("algorithm", "PPO"))().algo_class


def _scheduler(cfg: SweepConfig):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    opts = {k: v for k, v in cfg.scheduler.items() if k != "type"}
    kind = cfg.scheduler.get("type", "fifo")
    if kind == "asha":
        return ASHAScheduler(time_attr="training_iteration", **opts)
    if kind == "pbt":
        mutations: dict = {}
        for key, spec in cfg.search_space.items():
            path = key.split(".")
            if cfg.trainable == "learn" and path[0] == "training":
                path = path[1:]  # RLlib's training() keys sit at the top of its config dict
            node = mutations
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = dsl.to_tune(spec)
        return PopulationBasedTraining(time_attr="training_iteration",
                                       hyperparam_mutations=mutations, **opts)
    return FIFOScheduler()


def _search(cfg: SweepConfig):
    if cfg.search is None:
        return None
    try:
        import optuna  # noqa: F401
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise ConfigError("search: optuna is not installed (pip install optuna)") from None
    return OptunaSearch()


def shared_dataset(cfg: SweepConfig):
    """Load the data once in the driver and ship it through the object store (None when
    the search space varies the data: each trial loads its own)."""
    if cfg.trainable == "train" and not any(k == "data" for k in cfg.search_space):
        from mmbalance.data.registry import load_dataset

        return load_dataset(cfg.base.get("data", "synthetic"))
    return None


def _storage(cfg: SweepConfig, out: Path) -> str:
    return cfg.storage or str(out.resolve())


def _experiment(cfg: SweepConfig, out: Path):
    """(pyarrow filesystem, path) of the sweep's Tune experiment folder, local or a URI."""
    from pyarrow import fs

    storage = _storage(cfg, out)
    try:
        if "://" in storage:
            filesystem, base = fs.FileSystem.from_uri(storage)
        else:
            filesystem, base = fs.LocalFileSystem(), str(Path(storage).resolve())
    except (ValueError, TypeError, OSError) as exc:
        raise ConfigError(f"storage: cannot open {storage!r} ({exc})") from None
    return filesystem, f"{base.rstrip('/')}/{cfg.name}"


def _read_id(filesystem, path: str) -> str | None:
    from pyarrow import fs

    try:
        if filesystem.get_file_info(path).type != fs.FileType.File:
            return None
        with filesystem.open_input_stream(path) as f:
            return f.read().decode(errors="replace").strip()
    except OSError:
        return None


def check_storage(cfg: SweepConfig, out: Path, resume: bool) -> None:
    """Refuse a storage location that already holds an experiment of this name, unless it
    is this sweep's own (its resume), so one sweep never writes into another's."""
    from pyarrow import fs

    filesystem, path = _experiment(cfg, out)
    try:
        info = filesystem.get_file_info(path)
    except OSError as exc:
        raise ConfigError(f"storage: cannot read {path} ({exc})") from None
    if info.type == fs.FileType.NotFound:
        if resume:
            raise ConfigError(f"--resume: no Tune experiment to restore at {path}")
        return
    mine = (out / SWEEP_ID).read_text().strip() if (out / SWEEP_ID).is_file() else None
    theirs = _read_id(filesystem, f"{path}/{SWEEP_ID}")
    if resume and (theirs is None or mine is None or theirs == mine):
        return  # its own experiment (sweeps made before sweep ids carry none)
    owner = "another sweep" if resume else "an earlier sweep"
    raise ConfigError(f"storage: {path} already holds the Tune experiment of {owner}; choose "
                      "another storage or name (or resume that sweep with --resume ITS_FOLDER)")


def _claim(cfg: SweepConfig, out: Path) -> None:
    """Mark the new experiment folder and the sweep folder with one fresh sweep id."""
    filesystem, path = _experiment(cfg, out)
    token = secrets.token_hex(16)
    (out / SWEEP_ID).write_text(token + "\n")
    filesystem.create_dir(path, recursive=True)
    with filesystem.open_output_stream(f"{path}/{SWEEP_ID}") as f:
        f.write((token + "\n").encode())


def require_shared_storage(cfg: SweepConfig, out: Path) -> None:
    """On a cluster spanning several machines, refuse storage only one of them can reach
    (see `mmbalance/tune/storage.py`); call it connected, before creating `out`."""
    from mmbalance.ray_session import cluster_hosts
    from mmbalance.tune.storage import require_shared

    where = "storage" if cfg.storage else f"storage (default: the sweep folder {out})"
    require_shared(_storage(cfg, out), cluster_hosts(), where)


def run_sweep(cfg: SweepConfig, out: Path, progress: bool = True, address: str | None = None,
              resume: bool = False, trust_unsigned: bool = False, dataset=None) -> dict:
    """Run (or with `resume`, continue) the sweep into `out`; `trust_unsigned` lets resumed
    trials restore from checkpoints without a valid signed manifest; `dataset`: the shared
    data when the caller loaded (and so checked) it already."""
    from mmbalance.ray_session import ray_session

    check_storage(cfg, out, resume)
    with ray_session(address):
        require_shared_storage(cfg, out)
        if not resume:
            _claim(cfg, out)
        return _fit(cfg, out, progress, resume, trust_unsigned, dataset)


def _fit(cfg: SweepConfig, out: Path, progress: bool, resume: bool, trust_unsigned: bool,
         dataset=None) -> dict:
    """Build (or restore) the Tuner, run it, write the tables."""
    from ray import tune

    dataset = dataset if dataset is not None else shared_dataset(cfg)
    trainable = _trainable(cfg, dataset, trust_unsigned)
    path = f"{_storage(cfg, out).rstrip('/')}/{cfg.name}"
    t0 = time.perf_counter()
    if resume:
        if not tune.Tuner.can_restore(path):
            raise ConfigError(f"--resume: no Tune experiment to restore at {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True,
                                   param_space=_param_space(cfg, None)
                                   if cfg.trainable == "learn" else None)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=_param_space(cfg, None),
            tune_config=tune.TuneConfig(
                metric=cfg.metric, mode=cfg.mode, num_samples=cfg.num_samples,
                scheduler=_scheduler(cfg), search_alg=_search(cfg),
                max_concurrent_trials=cfg.max_concurrent or None,
            ),
            run_config=tune.RunConfig(
                name=cfg.name, storage_path=_storage(cfg, out), stop=cfg.stop or None,
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=cfg.keep_checkpoints,
                    # RLlib trials are class trainables: Tune saves them when asked
                    checkpoint_frequency=1 if cfg.trainable == "learn" else 0,
                    checkpoint_at_end=cfg.trainable == "learn"),
                verbose=1 if progress else 0,
            ),
        )
    results = tuner.fit()
    return write_results(cfg, out, results, time.perf_counter() - t0)


def _config_columns(config: dict, cfg: SweepConfig) -> dict:
    out = {}
    for key in cfg.search_space:
        node = config
        path = key.split(".")
        if cfg.trainable == "learn" and path[0] == "training":
            path = path[1:]
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        out[f"config/{key}"] = node if not isinstance(node, dict) else None
    return out


def write_results(cfg: SweepConfig, out: Path, results, seconds: float) -> dict:
    import pandas as pd

    from mmbalance.runs import write_table

    rows, history = [], []
    for r in results:
        metrics = {k: v for k, v in (r.metrics or {}).items() if k != "config"}
        trial_id = str(metrics.get("trial_id") or (Path(r.path).name if r.path else "?"))
        row = {"trial": trial_id, "status": "ERROR" if r.error else "TERMINATED"}
        row.update(_config_columns(r.config or {}, cfg))
        row.update({k: v for k, v in _flat(metrics).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
        rows.append(row)
        df = _epoch_history(r) if cfg.trainable == "train" else None
        if df is None:
            df = _trial_history(r)
        if df is not None:
            df.insert(0, "trial", trial_id)
            history.append(df)
    write_table(out / "results.parquet", rows)
    if history:
        hist = pd.concat(history, ignore_index=True)
        keep = [c for c in hist.columns if c == "trial" or pd.api.types.is_numeric_dtype(hist[c])]
        hist[keep].to_parquet(out / "trials.parquet")
    metric = cfg.metric
    # a trial that ended in an error (e.g. its loss diverged) is not a result: not ranked
    ok = [r for r in rows if r["status"] != "ERROR" and isinstance(r.get(metric), (int, float))
          and math.isfinite(r[metric])]
    ok.sort(key=lambda r: r[metric], reverse=cfg.mode == "max")
    cols = [c for c in rows[0] if c.startswith("config/")] if rows else []
    head = (f"Sweep `{cfg.name}`: {len(rows)} trials in {seconds / 60:.1f} min, "
            f"metric `{metric}` ({cfg.mode}).")
    errored = sum(r["status"] == "ERROR" for r in rows)
    if errored:
        head += f" {errored} trial(s) ended in an error (e.g. a diverged loss) and are not ranked."
    lines = [head, ""]
    if ok:
        best = ok[0]
        lines += ["Best trial: " + best["trial"] + ", " + ", ".join(
            f"{c[len('config/'):]}={best[c]}" for c in cols) + f" -> {metric} = {best[metric]:.4f}",
            ""]
    lines += ["| trial | " + " | ".join(c[len("config/"):] for c in cols) + f" | {metric} |",
              "|" + "---|" * (len(cols) + 2)]
    for r in ok:
        lines.append(f"| {r['trial']} | " + " | ".join(str(r[c]) for c in cols)
                     + f" | {r[metric]:.4f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return {"rows": rows, "best": ok[0] if ok else None, "summary": "\n".join(lines)}


def _epoch_history(result):
    """A plain-trainer trial's epochs from its last checkpoint: the trainer's own history,
    restored with it across crashes and resumes, so every epoch appears exactly once."""
    import pandas as pd

    from mmbalance.manifest import verify_folder
    from mmbalance.trainers.state import load_file

    if result.checkpoint is None:
        return None
    try:
        with result.checkpoint.as_directory() as d:
            verify_folder(d)
            epochs = load_file(Path(d) / "trainer.pt")["history"]["epochs"]
    except (UserError, OSError):  # checkpoint gone (e.g. deleted): fall back to result.json
        return None
    df = pd.DataFrame(epochs)
    df.insert(0, "training_iteration", df["epoch"] + 1)
    return df


def _trial_history(result):
    """Every report of a trial, from its result.json (complete across retries and restores;
    progress.csv can lose the rows before a retry), read through pyarrow's filesystems so
    URI storage works too."""
    import json

    import pandas as pd
    from pyarrow import fs

    if result.path:
        try:
            filesystem, base = fs.FileSystem.from_uri(result.path)
        except (ValueError, TypeError):
            filesystem, base = fs.LocalFileSystem(), result.path
        try:
            with filesystem.open_input_stream(f"{base}/result.json") as f:
                lines = f.read().decode().splitlines()
            rows = [_flat({k: v for k, v in json.loads(ln).items() if k != "config"})
                    for ln in lines if ln.strip()]
            if rows:  # an iteration re-run after a restore: its last report counts
                df = pd.DataFrame(rows)
                if "training_iteration" in df:
                    df = df.drop_duplicates("training_iteration", keep="last")
                return df.reset_index(drop=True)
        except (OSError, json.JSONDecodeError):
            pass
    return result.metrics_dataframe.copy() if result.metrics_dataframe is not None else None


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def expand_grid(cfg: SweepConfig) -> list[dict]:
    """The grid's points (for documentation and tests); ranges are left out."""
    grids = {k: s["grid"] for k, s in cfg.search_space.items() if "grid" in s}
    return [dict(zip(grids, values)) for values in itertools.product(*grids.values())]
