"""What keeps a sweep from running code from a file or waiting forever.

**Signed Tune state.** `Tuner.restore` unpickles `tuner.pkl`, the cloudpickle blobs inside
`experiment_state-*.json` (each trial's state), and the search algorithm's state
(`searcher-state-*.pkl`, `basic-variant-state-*.json`); a trial restores from its checkpoint
(a plain trial's `trainer.pt`; a learn trial's RLlib checkpoint, pickles). So:

- the Tune experiment's top-level `*.json` / `*.pkl` (exactly what Tune copies back and
  reads on restore) are snapshotted by the driver, with a copy of `sweep.yaml`, into
  `<out>/tune_state/`, signed (`mmbalance/manifest.py`) with the sweep's id, each time Tune
  saves its experiment state (from the callback's `get_state`, which Tune calls right after
  writing those files). The folder is replaced atomically (`tune_state.partial` renamed), so
  a driver killed with SIGKILL leaves the last complete, signed snapshot;
- `--resume` verifies that snapshot (and that `sweep.yaml` is its copy) before anything is
  read, then puts its files back over the experiment's (deleting every other top-level
  `*.json` / `*.pkl` there) and only then calls `Tuner.restore`. Anything Tune wrote after the
  last snapshot is dropped: the resumed sweep redoes at most that much work;
- trial checkpoints are signed by the trial that writes them and verified by the trial that
  restores one, before anything in it is read (`mmbalance/tune/trainables.py`), with the
  sweep id, so another sweep's checkpoint is refused too.

Left to trust (documented in docs/mistakes.md): the signing key itself; a trial's
`error.pkl`, which Tune writes and reads back within one session; a file swapped between
its verification and its load (both happen within one process, a moment apart).

**Watchdog.** A trial that no node can ever hold is refused before Ray starts (`check` in
`run.py`); one the cluster cannot hold *now* (others hold its CPUs or GPUs) would wait
silently, so when trials wait and none runs for `max_wait_s` seconds the sweep ends with one
line naming what the first waiting trial asks for and what the cluster has free.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import time
from pathlib import Path

from ray.tune import Callback

from mmbalance.errors import UntrustedError, UserError
from mmbalance.manifest import MANIFEST, sign_folder, verify_folder

STATE = "tune_state"
SWEEP_COPY = "sweep.yaml"


_UNFINISHED: dict[str, int] = {}


class SweepStalled(UserError):
    """No trial could start for `max_wait_s` seconds (the watchdog)."""


def _state_files(names: list[str]) -> list[str]:
    """What Tune reads back on restore: the experiment folder's top-level .json and .pkl."""
    return sorted(n for n in names if n.endswith((".json", ".pkl")) and "/" not in n)


class SweepGuard(Callback):
    """The driver's side of both guards (a Tune callback; it keeps no state of its own in
    Tune's checkpoints: `get_state` returns None)."""

    def __init__(self, out: str, storage: str, name: str, run: str | None,
                 max_wait_s: float) -> None:
        self.out, self.storage, self.name, self.run = out, storage, name, run
        self.max_wait_s = max_wait_s
        self._staging: str | None = None
        self._waiting_since: float | None = None
        self.token = secrets.token_hex(8)
        self._warned = False

    @property
    def unfinished(self) -> int:
        """Trials that had not finished when Tune's loop ended (0: the sweep completed)."""
        return _UNFINISHED.get(self.token, 0)

    # ------------------------------------------------------------ the watchdog
    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if trials and self._staging is None:
            self._staging = trials[0].storage.experiment_driver_staging_path

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        # trials still to finish after Tune's last step: an interrupted (Ctrl-C) sweep; Tune
        # marks them TERMINATED as it cleans up, so its own counts cannot tell. Kept by
        # token: Tune runs a copy of this callback, not the object the sweep made
        _UNFINISHED[self.token] = sum(t.status not in ("TERMINATED", "ERROR") for t in trials)
        waiting = [t for t in trials if t.status == "PENDING"]
        if not waiting or any(t.status == "RUNNING" for t in trials):
            self._waiting_since = None
            return
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        elif now - self._waiting_since > self.max_wait_s:
            import ray

            ask = waiting[0].placement_group_factory.required_resources
            free = {k: round(v, 3) for k, v in ray.available_resources().items()
                    if k in ("CPU", "GPU")}
            raise SweepStalled(
                f"sweep: no trial could start for {self.max_wait_s:g} s (max_wait_s): trial "
                f"{waiting[0].trial_id} asks for {_fmt(ask)}, the cluster has {_fmt(free)} "
                f"free; free the cluster, lower resources: or raise max_wait_s, then "
                f"`mmbalance sweep --resume {self.out}`")

    # ------------------------------------------------------------ signed state
    def get_state(self) -> None:
        """Called by Tune right after it wrote its experiment state: snapshot and sign it
        (and keep nothing in Tune's own callback state)."""
        if self._staging is None:
            return
        try:
            snapshot(Path(self.out), Path(self._staging), self.storage, self.name, self.run)
        except (OSError, UserError) as exc:  # the sweep goes on; only its resume is refused
            if not self._warned:
                self._warned = True
                print(f"warning: the sweep's Tune state could not be signed ({exc}); "
                      "`--resume` will refuse it unless given --trust-unsigned",
                      file=sys.stderr, flush=True)

    def __getstate__(self) -> dict:  # pickled in tuner.pkl: no session-bound fields
        return {**self.__dict__, "_staging": None, "_waiting_since": None}


def _fmt(resources: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items())
                           if k in ("CPU", "GPU")) + "}"


def _experiment_fs(storage: str, name: str):
    from pyarrow import fs

    if "://" in storage:
        filesystem, base = fs.FileSystem.from_uri(storage)
    else:
        filesystem, base = fs.LocalFileSystem(), str(Path(storage).resolve())
    return filesystem, f"{base.rstrip('/')}/{name}"


def _listing(filesystem, path: str) -> list[str]:
    from pyarrow import fs

    infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
    return [i.base_name for i in infos if i.type == fs.FileType.File]


def snapshot(out: Path, staging: Path, storage: str, name: str, run: str | None) -> None:
    """Copy Tune's state files (staging folder, and tuner.pkl from storage) and sweep.yaml
    into a new signed `<out>/tune_state`, replacing the last one atomically."""
    tmp = out / (STATE + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    names = _state_files([p.name for p in staging.iterdir() if p.is_file()])
    for file in names:
        shutil.copyfile(staging / file, tmp / file)
    if "tuner.pkl" not in names:
        filesystem, path = _experiment_fs(storage, name)
        with filesystem.open_input_stream(f"{path}/tuner.pkl") as f:
            (tmp / "tuner.pkl").write_bytes(f.read())
    shutil.copyfile(out / "sweep.yaml", tmp / SWEEP_COPY)
    sign_folder(tmp, run=run)
    final, old = out / STATE, out / (STATE + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def signed_state(out: Path, run: str | None) -> Path:
    """The sweep's last signed Tune state, verified (and `sweep.yaml` its signed copy), or
    one line saying why not."""
    state = out / STATE
    if not (state / MANIFEST).is_file() and (out / (STATE + ".old") / MANIFEST).is_file():
        state = out / (STATE + ".old")  # killed between the two renames of `snapshot`
    if not state.is_dir():
        raise UntrustedError(f"--resume {out}: no signed Tune state ({STATE}/); Tune's own "
                             "files unpickle code, so they are not loaded (a sweep stopped "
                             "before its first state save, or made by an older version: "
                             "start it again, or pass --trust-unsigned only if you trust "
                             "the folder)")
    verify_folder(state, run=run)
    if (state / SWEEP_COPY).read_bytes() != (out / "sweep.yaml").read_bytes():
        raise UntrustedError(f"{out / 'sweep.yaml'}: changed since the sweep signed it; a "
                             "resume continues the sweep as it was started (start a new "
                             "sweep to change it)")
    return state


def restore_signed_state(out: Path, storage: str, name: str, run: str | None) -> None:
    """Put the verified snapshot back as the experiment's state: every other top-level
    .json/.pkl of the experiment folder is deleted, so Tune reads only signed files."""
    state = signed_state(out, run)
    filesystem, path = _experiment_fs(storage, name)
    for file in _state_files(_listing(filesystem, path)):
        filesystem.delete_file(f"{path}/{file}")
    for file in _state_files([p.name for p in state.iterdir()]):
        if file in (MANIFEST, SWEEP_COPY):
            continue
        with filesystem.open_output_stream(f"{path}/{file}") as f:
            f.write((state / file).read_bytes())
