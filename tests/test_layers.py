"""Imports go one way: data -> models -> trainers -> policies -> envs -> tune -> the commands,
over a floor of small shared modules; never back up, not even inside a function."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mmbalance"
FLOOR = {"errors", "spec", "balance", "manifest", "runs", "ray_session", "ray_reaper",
         "tracking", "limits"}
ORDER = ["data", "models", "trainers", "policies", "envs", "tune", "compare", "report", "cli"]


def _layer(part: str) -> str:
    return part


def _rank(part: str) -> int:
    return -1 if part in FLOOR else ORDER.index(part)


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmbalance."):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("mmbalance."))
    return out


def test_imports_go_one_way():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        if rel.parts == ("__init__",):
            continue
        mine = _layer(rel.parts[0])
        for target in _imports(path):
            theirs = _layer(target.split(".")[1])
            if theirs == mine or (mine in FLOOR and theirs in FLOOR):
                continue
            if _rank(theirs) >= _rank(mine):
                wrong.append(f"{'/'.join(rel.parts)}.py imports {target}")
    assert not wrong, wrong
    assert len(list(PACKAGE.rglob("*.py"))) > 50  # the scan saw the package


def test_the_trainer_layer_never_imports_a_sampler_or_ray():
    for path in (PACKAGE / "trainers").rglob("*.py"):
        text = path.read_text()
        assert "mmbalance.policies" not in text and "import ray" not in text, path
        # nor tracking: run folders (and their events) are written by the driver
        assert not any(name in text for name in ("mmbalance.tracking", "tensorboard", "mlflow")
                       ), path
