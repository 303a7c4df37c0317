"""Commands on a real cluster: every result comes home, a wrong address or token fails in
seconds with one line and leaves no folder, local storage is refused on several machines, and
a local cluster listens on loopback only and dies with its driver.

The cluster is the `token_cluster` fixture (conftest.py): two nodes with token auth on, in
different working directories, the worker at its own address; commands reach it from
subprocesses, as a user's shell would.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "scripts"
TINY = "synthetic:n_train=240,n_val=80,n_test=80,bayes_samples=500"


def mmbalance(*args: str, env: dict, cwd: Path, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "mmbalance.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def tiny_sweep_yaml(path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "tiny", "trainable": "train",
        "base": {"data": TINY, "method": "joint", "sampler": "uniform",
                 "train": {"epochs": 1, "batch_size": 40}},
        "search_space": {"train.lr": {"grid": [0.01, 0.02]}},
    }))
    return path


def test_compare_on_two_machines_writes_every_run_under_the_drivers_out(token_cluster,
                                                                        tmp_path):
    """Each node trains in its own working directory; a relative --out still gets every run
    folder, complete, under the driver's directory, and nothing lands on the nodes."""
    driver = tmp_path / "driver"
    driver.mkdir()
    res = mmbalance("compare", "--address", token_cluster.address, "--data", TINY,
                    "--grid", "joint/uniform", "--seeds", "3", "--epochs", "1",
                    "--out", "rel/out", "--no-progress", env=token_cluster.env(), cwd=driver)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"Ray: cluster at {token_cluster.address}: 2 nodes on 2 machines" in res.stdout
    out = driver / "rel" / "out"
    runs = sorted((out / "runs").iterdir())
    assert [p.name for p in runs] == [f"joint__uniform__s{i}" for i in range(3)]
    for run in runs:
        assert {p.name for p in run.iterdir()} == {
            "config.json", "steps.parquet", "epochs.parquet", "metrics.json", "model.pt", "tb"}
    results = pd.read_parquet(out / "results.parquet")
    assert sorted(set(results["ray_node"])) == token_cluster.nodes  # both nodes trained
    for node_dir in (token_cluster.head_dir, token_cluster.worker_dir):
        assert not [p for p in node_dir.rglob("*") if p.is_file()], node_dir


@pytest.mark.parametrize("command, token, needle", [
    ("compare", "none", "sent no token: set RAY_AUTH_MODE=token"),
    ("learn", "wrong", "refused the token from RAY_AUTH_TOKEN"),
])
def test_a_failed_connection_is_one_line_and_leaves_no_folder(command, token, needle,
                                                              token_cluster, tmp_path):
    """Without the token or with another one: exit 2, one line on stderr that names the
    address and says what to set, and no output folder (no compare.json or
    learn_config.yaml that would make the corrected rerun refuse it as 'not empty'). The
    sweep's case is `test_a_sweep_on_two_machines_refuses_local_storage`; an address where
    nothing listens, `test_connection_failures_take_seconds`."""
    address = token_cluster.address
    args = {
        "compare": ["compare", "--data", TINY, "--grid", "joint/uniform", "--seeds", "1"],
        "learn": ["learn", str(ROOT / "tune_configs" / "dus_ppo.yaml")],
    }[command]
    out = tmp_path / "out"
    t0 = time.monotonic()
    res = mmbalance(*args, "--address", address, "--out", str(out), "--no-progress",
                    env=token_cluster.env(token), cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert f"--address {address}" in lines[0] and needle in lines[0]
    assert "RAY_AUTH_MODE=token` must be set on every client and every node" in lines[0]
    assert not out.exists()
    assert time.monotonic() - t0 < 60  # imports included; before: 22 s to 14 min


def test_connection_failures_take_seconds(token_cluster):
    """The connection checks alone, bounded: a closed port, a port that accepts but is not
    Ray (the GCS probe times out), a cluster that refuses the token."""
    with socket.socket() as closed, socket.socket() as silent:
        closed.bind(("127.0.0.1", 0))
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections, never answers
        addresses = [f"127.0.0.1:{closed.getsockname()[1]}",
                     f"127.0.0.1:{silent.getsockname()[1]}", token_cluster.address]
        closed.close()
        res = subprocess.run([sys.executable, str(SCRIPTS / "connect_timing.py"), *addresses],
                             env=token_cluster.env("wrong"), capture_output=True, text=True,
                             timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["error"] is not None for r in report] == [True, True, True]
    assert "nothing listens" in report[0]["error"]
    assert "is not a Ray GCS" in report[1]["error"]
    assert "refused the token" in report[2]["error"]
    assert all(r["seconds"] < 15 for r in report), report


def test_a_driver_needs_a_node_of_the_cluster_on_its_machine():
    """`ray.init` attaches a driver to a raylet on its own machine; from a machine without
    one it waits a minute and fails with a traceback. Checked from the GCS's node list."""
    from types import SimpleNamespace

    from mmbalance.errors import UserError
    from mmbalance.ray_session import _require_local_node

    here, there = "ab" * 28, "cd" * 28
    nodes = {k: SimpleNamespace(node_id=bytes.fromhex(k), state=state)
             for k, state in ((here, 0), (there, 0))}
    _require_local_node(nodes, "--address h:1", local_ids={here})
    with pytest.raises(UserError, match="--address h:1: no node of that cluster runs on this"):
        _require_local_node(nodes, "--address h:1", local_ids={"ef" * 28})
    nodes[here].state = 1  # the local node is dead
    with pytest.raises(UserError, match="ray://HEAD:10001"):
        _require_local_node(nodes, "--address h:1", local_ids={here})


def test_a_sweep_on_two_machines_refuses_local_storage(token_cluster, tmp_path):
    """Trials on the second machine could not write (or restore) checkpoints on this one's
    disk: refused before the folder is made, in one line that says what to set."""
    out = tmp_path / "out"
    res = mmbalance("sweep", str(tiny_sweep_yaml(tmp_path / "sweep.yaml")), "--address",
                    token_cluster.address, "--out", str(out), "--no-progress",
                    env=token_cluster.env(), cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert f"storage (default: the sweep folder {out})" in lines[0]
    assert "set `storage:`" in lines[0] and "s3://" in lines[0]
    assert not out.exists()


def test_storage_that_every_node_reaches(tmp_path):
    from mmbalance.errors import ConfigError
    from mmbalance.tune.storage import NETWORK_FILESYSTEMS, filesystem_type, require_shared

    local = str(tmp_path / "sweeps")
    assert filesystem_type(local) not in NETWORK_FILESYSTEMS  # a test machine's own disk
    require_shared(local, ["10.0.0.1"], "storage")  # one machine: its own disk will do
    require_shared("s3://bucket/sweeps", ["10.0.0.1", "10.0.0.2"], "storage")
    with pytest.raises(ConfigError, match="storage: .* own disk"):
        require_shared(local, ["10.0.0.1", "10.0.0.2"], "storage")
    with pytest.raises(ConfigError, match="own disk"):
        require_shared(f"file://{local}", ["10.0.0.1", "10.0.0.2"], "storage")


def test_a_local_cluster_listens_on_loopback_only_and_dies_with_its_driver():
    """A local cluster started by mmbalance: every socket its processes listen on is on
    127.0.0.1, and when the driver is SIGKILLed every one of its processes is gone within
    seconds (Ray's agents alone would linger about a minute), while a process the driver
    had started before the cluster is left alone."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "local_session.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    started: list = [proc]  # everything to end afterwards, by process id
    try:
        line = proc.stdout.readline()
        assert line, "the driver died before its cluster was up"
        info = json.loads(line)
        procs = [psutil.Process(pid) for pid in info["pids"]]
        bystander = psutil.Process(info["bystander"])
        started += [*procs, bystander]
        names = {p.name() for p in procs}
        assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names
        pids = {p.pid for p in procs}
        listening = [c.laddr.ip for c in psutil.net_connections("inet")
                     if c.status == psutil.CONN_LISTEN and c.pid in pids]
        assert listening
        assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip in listening), listening
        t0 = time.monotonic()
        proc.send_signal(signal.SIGKILL)  # the driver only: its cluster must follow
        proc.wait()
        alive = procs
        while alive and time.monotonic() - t0 < 15:
            time.sleep(0.2)
            alive = [p for p in alive if _running(p)]
        assert not alive, f"still running 15 s after the driver died: {alive}"
        assert _running(bystander)
    finally:
        for p in started:
            try:
                p.kill()
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
