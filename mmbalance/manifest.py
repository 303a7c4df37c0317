"""Signed manifests of checkpoint folders: nothing is unpickled from a folder that changed.

RLlib checkpoints are pickles, and loading a pickle can run code, so a checkpoint is trusted
the way signed artefacts are. At save time `sign_folder` writes `MANIFEST.json`: the
SHA-256 of every file in the folder, signed with HMAC-SHA256 under a key kept outside any
run folder. Before a resume `verify_folder` recomputes every hash and the signature and
refuses, with one line naming the file, a folder whose manifest is missing or not signed
with this key, or where a listed file is missing (e.g. a deleted `learner_group/`), changed
(edited, truncated) or a file was added.

The key: the environment variable `MMBALANCE_SIGNING_KEY` (at least 16 characters; give
every node of a cluster the same one), else a file created on first use, mode 0600, at
`$XDG_CONFIG_HOME/mmbalance/signing.key` (default `~/.config/mmbalance/signing.key`).
A key file that others can read is refused: anyone who reads it can sign a forged folder.
`--trust-unsigned` on the resuming command skips the check for a folder the user trusts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from mmbalance.errors import UntrustedError, UserError

MANIFEST = "MANIFEST.json"
FORMAT = "mmbalance-manifest/1"
KEY_ENV = "MMBALANCE_SIGNING_KEY"
_TRUST_HINT = "not loaded (pass --trust-unsigned only if you trust where it came from)"


def key_path() -> Path:
    """Where the signing key file lives (the user's config folder, never a run folder)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mmbalance" / "signing.key"


# files that mark a folder as a run, compare, learn, sweep or checkpoint folder: a key kept
# in one (or below one) sits beside what it signs, and whoever can rewrite a checkpoint
# there could re-sign it
# (a config file alone, e.g. a sweep.yaml kept in the home folder, does not make one)
RUN_MARKERS = ("MANIFEST.json", "compare.json", "sweep_id", "run_id")
PAIRED_MARKERS = {  # a file that marks an output folder together with one of the others
    "config.json": ("steps.parquet", "epochs.parquet", "metrics.json", "model.pt"),
    "learn_config.yaml": ("checkpoints", "progress.parquet", "policy"),
    "sweep.yaml": ("results.parquet", "tune_state", "summary.md"),
}


def _run_folder_above(path: Path) -> Path | None:
    """The nearest folder holding `path` that is marked as an output folder, or None."""
    for folder in path.absolute().resolve().parents:
        if any((folder / m).exists() for m in RUN_MARKERS):
            return folder
        for marker, partners in PAIRED_MARKERS.items():
            if (folder / marker).exists() and any((folder / p).exists() for p in partners):
                return folder
    return None


def signing_key(folder: Path | None = None) -> bytes:
    """The HMAC key: from the environment, else the key file (created on first use)."""
    given = os.environ.get(KEY_ENV)
    if given is not None:
        if len(given) < 16:
            raise UserError(f"{KEY_ENV}: the signing key must have at least 16 characters")
        return given.encode()
    path = key_path()
    if folder is not None and path.resolve().is_relative_to(Path(folder).resolve()):
        raise UserError(f"{path}: the signing key may not live inside the folder it signs "
                        f"({folder}); set XDG_CONFIG_HOME or {KEY_ENV} elsewhere")
    inside = _run_folder_above(path)
    if inside is not None:
        raise UserError(f"{path}: the signing key may not live in a run, learn, sweep or "
                        f"compare folder ({inside}); set XDG_CONFIG_HOME or {KEY_ENV} "
                        "to a place outside every output folder")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: read that one
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UserError(f"{path}: the signing key is readable by others (mode {mode:o}); "
                        f"run chmod 600 {path}")
    key = path.read_text().strip()
    if len(key) < 16:
        raise UserError(f"{path}: the signing key is shorter than 16 characters; delete the "
                        "file to have a new one made (checkpoints it signed will not verify)")
    return key.encode()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries(folder: Path) -> dict[str, Path]:
    """Every entry below `folder` but the manifest, by its relative POSIX path."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST or (path.is_dir() and not path.is_symlink()):
            continue
        out[rel] = path
    return out


def _signature(key: bytes, files: dict[str, str], run: str | None = None) -> str:
    signed: dict = {"format": FORMAT, "files": files}
    if run is not None:  # manifests written before run ids carry none
        signed["run"] = run
    body = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def new_run_id() -> str:
    """A run's identity, written once when its folder is made and signed into each of its
    checkpoints' manifests, so a checkpoint copied from another run is refused."""
    return secrets.token_hex(16)


def read_run_id(folder: str | Path, name: str = "run_id") -> str | None:
    path = Path(folder) / name
    return path.read_text().strip() or None if path.is_file() else None


def sign_folder(folder: str | Path, run: str | None = None) -> Path:
    """Write the folder's signed manifest (call it once the folder is complete); `run`: the
    id of the run it belongs to, signed with it."""
    folder = Path(folder)
    key = signing_key(folder)
    files = {}
    for rel, path in _entries(folder).items():
        if path.is_symlink() or not path.is_file():
            raise UserError(f"{path}: not a regular file; a checkpoint to sign holds files only")
        files[rel] = _sha256(path)
    manifest = {"format": FORMAT, "files": files, "signature": _signature(key, files, run)}
    if run is not None:
        manifest["run"] = run
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / MANIFEST)
    return folder / MANIFEST


def verify_folder(folder: str | Path, trust_unsigned: bool = False,
                  run: str | None = None) -> None:
    """Refuse (UntrustedError, one line naming the file) a folder that does not match its
    signed manifest, or, given `run`, whose manifest names another run (or none: a run with
    an id signs every checkpoint with it); `trust_unsigned` skips the check."""
    if trust_unsigned:
        return
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise UntrustedError(f"{folder}: checkpoint is not signed (no {MANIFEST}); {_TRUST_HINT}")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        signature = manifest["signature"]
        owner = manifest.get("run")
        ok = (manifest.get("format") == FORMAT and isinstance(files, dict)
              and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
              and isinstance(signature, str) and (owner is None or isinstance(owner, str)))
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise UntrustedError(f"{path}: not a readable {FORMAT} manifest; {_TRUST_HINT}")
    if not hmac.compare_digest(_signature(signing_key(folder), files, owner), signature):
        raise UntrustedError(
            f"{path}: signature does not match this machine's key (edited, or signed with "
            f"another key: on a cluster give every node the same {KEY_ENV}); {_TRUST_HINT}")
    if run is not None and owner != run:
        raise UntrustedError(f"{path}: this checkpoint belongs to another run (run id "
                             f"{owner or 'none'}, this run is {run}); a checkpoint is only "
                             f"resumed by the run that made it; {_TRUST_HINT}")
    present = _entries(folder)
    for rel, digest in sorted(files.items()):
        file = present.get(rel)
        if file is None or file.is_symlink() or not file.is_file():
            raise UntrustedError(f"{folder / rel}: missing (the signed manifest lists it); "
                                 f"{_TRUST_HINT}")
        if not hmac.compare_digest(_sha256(file), digest):
            raise UntrustedError(f"{folder / rel}: changed since it was signed (edited or "
                                 f"truncated); {_TRUST_HINT}")
    extra = sorted(set(present) - set(files))
    if extra:
        raise UntrustedError(f"{folder / extra[0]}: not in the signed manifest; {_TRUST_HINT}")
