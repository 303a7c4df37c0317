"""Running a sweep on Ray Tune: the Tuner (trainable, search space, scheduler, search
algorithm, run config), the experiment's place in storage and who owns it, resume."""

from __future__ import annotations

import copy
import dataclasses
import math
import secrets
import time
from pathlib import Path

from mmbalance.errors import ConfigError
from mmbalance.manifest import read_run_id
from mmbalance.tracking import tune_callbacks
from mmbalance.tune import search_space as dsl
from mmbalance.tune.sweep.config import SweepConfig
from mmbalance.tune.sweep.guard import SweepGuard, restore_signed_state, signed_state
from mmbalance.tune.sweep.results import write_results

SWEEP_ID = "sweep_id"  # in the sweep folder and in its Tune experiment folder: who owns it


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


def _trainable(cfg: SweepConfig, dataset, trust_unsigned: bool = False,
               run: str | None = None):
    from ray import tune

    if cfg.trainable == "learn":
        return _algo_class(cfg)
    from mmbalance.tune.trainables import plain_trial

    fn = tune.with_parameters(plain_trial, dataset=dataset, trust_unsigned=trust_unsigned,
                              run=run)
    res = {"cpu": float(cfg.resources.get("cpu", 1)), "gpu": float(cfg.resources.get("gpu", 0))}
    return tune.with_resources(fn, res)


def _algo_class(cfg: SweepConfig):
    """The algorithm's class, with signed and verified checkpoints (see trainables.py)."""
    from mmbalance.tune.trainables import verified_algorithm

    return verified_algorithm(cfg.base.get("algorithm", "PPO"))


def fault_inside_sweep(cfg: SweepConfig, out: Path) -> SweepConfig:
    """The sweep with its fault drill's marker (base.fault, or base.env_config.fault of
    learn trials) made absolute inside `out`, or one line if it lies outside."""
    from mmbalance.envs.env_config import fault_inside

    base = copy.deepcopy(cfg.base)
    if cfg.trainable == "train" and base.get("fault"):
        base["fault"] = fault_inside("base.fault", base["fault"], out)
    env_config = base.get("env_config")
    if cfg.trainable == "learn" and isinstance(env_config, dict) and env_config.get("fault"):
        env_config["fault"] = fault_inside("base.env_config.fault", env_config["fault"], out)
    return dataclasses.replace(cfg, base=base)


def check_sweep_resources(cfg: SweepConfig, have: dict | None = None) -> None:
    """Refuse a trial no node of the cluster can hold (it would wait forever, Tune printing
    "No trial is running" once a minute): `have` from `known_resources`, else the connected
    cluster's."""
    from mmbalance.ray_session import require_resources

    if cfg.trainable == "learn":
        from mmbalance.tune.learn import check_learn_resources
        from mmbalance.tune.learn_config import LearnConfig

        check_learn_resources(LearnConfig.from_dict(cfg.sample_base()), have, in_trial=True)
        return
    need = {"CPU": float(cfg.resources.get("cpu", 1)), "GPU": float(cfg.resources.get("gpu", 0))}
    require_resources("resources", need, have, per="trial")


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
            kind_of, values = next(iter(spec.items()))
            # a choice goes to PBT as a list: a mutation moves to a neighbouring value (or
            # resamples one); as a Tune domain PBT would multiply the value by 0.8 or 1.2,
            # leaving the set (an int) or failing (text such as quotas 16/112)
            node[path[-1]] = list(values) if kind_of == "choice" else dsl.to_tune(spec)
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
    from mmbalance.ray_session import known_resources, ray_session

    cfg = fault_inside_sweep(cfg, out)
    check_storage(cfg, out, resume)
    have = known_resources(address)
    if have is not None:
        check_sweep_resources(cfg, have)
    if resume and not trust_unsigned:
        signed_state(out, read_run_id(out, SWEEP_ID))
    with ray_session(address):
        require_shared_storage(cfg, out)
        check_sweep_resources(cfg)
        if not resume:
            _claim(cfg, out)
            if not (out / "sweep.yaml").exists():  # what --resume continues (and signs)
                import yaml

                (out / "sweep.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return _fit(cfg, out, progress, resume, trust_unsigned, dataset)


def _fit(cfg: SweepConfig, out: Path, progress: bool, resume: bool, trust_unsigned: bool,
         dataset=None) -> dict:
    """Build (or restore) the Tuner, run it, write the tables."""
    from ray import tune

    dataset = dataset if dataset is not None else shared_dataset(cfg)
    run = read_run_id(out, SWEEP_ID)
    trainable = _trainable(cfg, dataset, trust_unsigned, run)
    path = f"{_storage(cfg, out).rstrip('/')}/{cfg.name}"
    guard = SweepGuard(str(out.resolve()), _storage(cfg, out), cfg.name, run, cfg.max_wait_s)
    t0 = time.perf_counter()
    if resume:
        if not trust_unsigned:  # Tune's files are read only as the sweep signed them
            restore_signed_state(out, _storage(cfg, out), cfg.name, run)
        if not tune.Tuner.can_restore(path):
            raise ConfigError(f"--resume: no Tune experiment to restore at {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True,
                                   param_space=_param_space(cfg, None)
                                   if cfg.trainable == "learn" else None)
        # the guard restored from tuner.pkl knew the folder as it was: use this one (a
        # Tuner driven through Ray Client keeps its config remote: left as restored)
        local = getattr(tuner, "_local_tuner", None)
        if local is not None:
            run_config = local.get_run_config()
            run_config.callbacks = [c for c in run_config.callbacks or []
                                    if not isinstance(c, SweepGuard)] + [guard]
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
                # TensorBoard per trial, and MLflow when asked: Tune's own logger callbacks;
                # the guard signs Tune's state and watches for trials that cannot start
                callbacks=[*tune_callbacks(cfg.tracking, cfg.tracking_uri, out, cfg.name),
                           guard],
            ),
        )
    results = tuner.fit()
    unfinished = guard.unfinished
    res = write_results(cfg, out, results, time.perf_counter() - t0, unfinished=unfinished)
    res["unfinished"] = unfinished
    if cfg.trainable == "learn" and not unfinished:
        res["policy"] = export_best_policy(cfg, results, out, run, trust_unsigned)
    return res


def export_best_policy(cfg: SweepConfig, results, out: Path, run: str | None,
                       trust_unsigned: bool = False) -> Path | None:
    """The best trial's policy (by the sweep's metric, its last result), exported from its
    last checkpoint as `mmbalance learn` exports one, to `out/best_policy`: what
    `mmbalance evaluate` and `learned:` take; its `learned_with` counts every trial's env
    steps and episodes. None where no trial left a checkpoint."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    from mmbalance.manifest import verify_folder
    from mmbalance.tune.learn import export_learned
    from mmbalance.tune.learn_config import LearnConfig

    try:
        best = results.get_best_result(metric=cfg.metric, mode=cfg.mode)
    except RuntimeError:  # no trial reported the metric
        return None
    if best is None or best.checkpoint is None:
        return None
    with best.checkpoint.as_directory() as d:
        verify_folder(d, trust_unsigned, run=None if trust_unsigned else run)
        module = RLModule.from_checkpoint(
            Path(d) / "learner_group" / "learner" / "rl_module" / "default_policy")
    learn = LearnConfig.from_dict({**copy.deepcopy(cfg.base),
                                   "env_config": dict(best.config["env_config"])})
    # what finding it cost: every trial of the sweep, not the best one's alone
    steps = episodes = 0.0
    for result in results:
        m = result.metrics or {}
        runners = m.get("env_runners", {})
        step = m.get("num_env_steps_sampled_lifetime",
                     runners.get("num_env_steps_sampled_lifetime", math.nan))
        steps += float(step) if math.isfinite(float(step)) else 0.0
        ep = float(runners.get("num_episodes_lifetime", math.nan))
        episodes += ep if math.isfinite(ep) else 0.0
    return export_learned(module, learn, out / "best_policy",
                          int((best.metrics or {}).get("training_iteration", 0)),
                          [{"env_steps": steps, "episodes": episodes}])
