"""Issue 12, checkpoints: RLlib checkpoints are pickles, so `learn --resume` (and a resumed
plain-trainer sweep trial) loads one only when every file matches its HMAC-signed manifest;
tampered, truncated, unsigned and incomplete checkpoints are refused in one line naming the
file, and a payload never runs."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
from pathlib import Path

import pytest

from mmbalance.errors import UntrustedError, UserError
from mmbalance.manifest import KEY_ENV, MANIFEST, key_path, sign_folder, verify_folder


class Payload:
    """Unpickling this runs a shell command (what an edited algorithm_state.pkl can do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------- the key and the manifest
def test_key_file_is_made_once_mode_0600_outside_the_run(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "state.pkl").write_bytes(b"weights")
    sign_folder(folder)
    path = key_path()
    assert path == tmp_path / "config" / "mmbalance" / "signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(folder.rglob("*.key"))
    key = path.read_text()
    verify_folder(folder)
    assert path.read_text() == key  # made once, then reused

    path.chmod(0o644)  # a key others can read could sign a forged folder
    with pytest.raises(UserError, match="chmod 600"):
        verify_folder(folder)
    path.chmod(0o600)
    monkeypatch.setenv(KEY_ENV, "another key, given to every node of a cluster")
    with pytest.raises(UntrustedError, match="signature does not match"):
        verify_folder(folder)
    verify_folder(folder, trust_unsigned=True)


def test_a_trainer_checkpoint_of_a_sweep_trial_is_verified_before_restore(ray_session,
                                                                          tmp_path,
                                                                          monkeypatch):
    """plain_trial restores only a checkpoint that matches its signed manifest."""
    from ray import tune

    from mmbalance.tune import trainables
    from mmbalance.tune.trainables import build_trainer, plain_trial

    config = {"data": "synthetic:n_train=64,n_val=32,n_test=32,bayes_samples=200",
              "method": "joint", "train": {"epochs": 1}}
    ckpt = tmp_path / "checkpoint_000000"
    ckpt.mkdir()
    build_trainer(config).save(ckpt / "trainer.pt")
    sign_folder(ckpt)
    verify_folder(ckpt)
    with open(ckpt / "trainer.pt", "ab") as f:
        f.write(b"\0")
    monkeypatch.setattr(trainables.tune, "get_checkpoint",
                        lambda: tune.Checkpoint.from_directory(str(ckpt)))
    with pytest.raises(UntrustedError, match="trainer.pt: changed since it was signed"):
        plain_trial(config)


# ------------------------------------------------------------- learn --resume
@pytest.fixture(scope="module")
def learn_run(ray_session, tmp_path_factory):
    from test_learn import tiny_config

    from mmbalance.tune.learn import run_learn

    out = tmp_path_factory.mktemp("signed") / "run"
    run_learn(tiny_config("dus_ppo.yaml"), out, progress=False)
    return out


@pytest.fixture
def run(learn_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(learn_run, copy)
    return copy


def _ckpt(run: Path) -> Path:
    return run / "checkpoints" / "iter_0001"


def test_learn_checkpoints_are_signed(learn_run):
    manifest = json.loads((_ckpt(learn_run) / MANIFEST).read_text())
    assert "algorithm_state.pkl" in manifest["files"]
    assert any(f.startswith("learner_group/") for f in manifest["files"])
    verify_folder(_ckpt(learn_run))


def _tamper(ckpt: Path, marker: Path) -> str:
    (ckpt / "algorithm_state.pkl").write_bytes(pickle.dumps(Payload(marker)))
    return "algorithm_state.pkl: changed since it was signed"


def _truncate(ckpt: Path, marker: Path) -> str:
    state = ckpt / "learner_group" / "learner" / "state.pkl"
    state.write_bytes(state.read_bytes()[:100])
    return "learner/state.pkl: changed since it was signed"


def _unsign(ckpt: Path, marker: Path) -> str:
    (ckpt / MANIFEST).unlink()
    return "checkpoint is not signed"


def _forge(ckpt: Path, marker: Path) -> str:
    _tamper(ckpt, marker)  # a payload with a manifest re-signed under another key
    key = os.environ[KEY_ENV]
    os.environ[KEY_ENV] = "an attacker's own signing key"
    try:
        sign_folder(ckpt)
    finally:
        os.environ[KEY_ENV] = key
    return "signature does not match"


def _delete_learner_group(ckpt: Path, marker: Path) -> str:
    shutil.rmtree(ckpt / "learner_group")
    return "learner_group/class_and_ctor_args.pkl: missing"


def _add_file(ckpt: Path, marker: Path) -> str:
    (ckpt / "env_runner" / "extra.pkl").write_bytes(pickle.dumps(Payload(marker)))
    return "env_runner/extra.pkl: not in the signed manifest"


@pytest.mark.parametrize("damage", [_tamper, _truncate, _unsign, _forge, _delete_learner_group,
                                    _add_file])
def test_learn_resume_refuses_a_checkpoint_that_is_not_as_signed(damage, run, refused, tmp_path):
    marker = tmp_path / "pwned"
    needle = damage(_ckpt(run), marker)
    before = (run / "progress.parquet").read_bytes()
    line = refused(["learn", "--resume", run, "--iterations", "2", "--no-progress"], needle,
                   marker)
    assert "--trust-unsigned" in line
    assert (run / "progress.parquet").read_bytes() == before  # nothing resumed
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter_0001"]


def test_trust_unsigned_resumes_an_unsigned_checkpoint_but_never_an_incomplete_one(run,
                                                                                   refused):
    from mmbalance.cli import main

    (_ckpt(run) / MANIFEST).unlink()
    assert main(["learn", "--resume", str(run), "--iterations", "2", "--trust-unsigned",
                 "--no-progress"]) == 0
    verify_folder(run / "checkpoints" / "iter_0002")  # what it writes is signed again
    shutil.rmtree(run / "checkpoints" / "iter_0002" / "learner_group")
    refused(["learn", "--resume", run, "--iterations", "3", "--trust-unsigned"],
            "learner_group: missing; the checkpoint is incomplete")
