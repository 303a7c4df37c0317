import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# checkpoints are signed (mmbalance/manifest.py): one key for the session and every Ray
# worker it starts, and no key file written into the user's config folder
os.environ.setdefault("MMBALANCE_SIGNING_KEY", os.urandom(24).hex())


@pytest.fixture(scope="session")
def small_synthetic():
    """A small version of the default synthetic data (fast to train on)."""
    from mmbalance.data.synthetic import SyntheticConfig, make_synthetic

    return make_synthetic(SyntheticConfig(n_train=600, n_val=300, n_test=300, bayes_samples=4000))


@pytest.fixture(scope="session")
def three_modal():
    from mmbalance.data.synthetic import SyntheticConfig, make_synthetic

    return make_synthetic(
        SyntheticConfig(
            names=["rgb", "depth", "flow"], dim=[8, 12, 16], separation=[3.0, 2.0, 1.5],
            noise=[1.0, 1.0, 1.0], informative=[0.8, 1.0, 1.0], n_train=600, n_val=200,
            n_test=200, bayes_samples=4000,
        )
    )


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray cluster for the whole session (start-up costs seconds), started the way
    the commands start one: bound to loopback, reaped if the test process is killed."""
    ray = pytest.importorskip("ray")
    from mmbalance.ray_session import ray_session as session

    with session("local", num_cpus=2, object_store_memory=200 * 1024**2):
        yield ray


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models train faster on one thread, and a shared 2-core machine stays responsive."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def refused(capsys):
    """`refused(args, needle, *paths)`: run the CLI in-process and assert the promise for a
    user mistake: exit 2, exactly one line on stderr (no traceback) containing `needle`,
    and none of `paths` (output folders, payload markers) created. Returns the line."""
    from pathlib import Path

    from mmbalance.cli import main

    def check(args: list[str], needle: str, *paths) -> str:
        capsys.readouterr()
        rc = main([str(a) for a in args])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2, (rc, err)
        assert len(lines) == 1 and "Traceback" not in err, err
        assert needle in lines[0], (needle, lines[0])
        for path in paths:
            assert not Path(path).exists(), path
        return lines[0]

    return check


class TokenCluster:
    """Where the `token_cluster` fixture's cluster is, and the environments to reach it."""

    def __init__(self, address: str, nodes: list[str], root, token) -> None:
        self.address, self.nodes, self.root, self.token = address, nodes, root, token
        self.head_dir, self.worker_dir = root / "head", root / "worker"

    def env(self, token: str = "file") -> dict:
        """A client's environment: token 'file' (the cluster's token file, as an operator
        hands it out), 'wrong' (another token) or 'none' (RAY_AUTH_MODE unset)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                            "RAY_AUTH_TOKEN_PATH")}
        if token == "file":
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token))
        elif token == "wrong":
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="not-the-cluster-token-0000")
        return env


@pytest.fixture(scope="session")
def token_cluster(tmp_path_factory):
    """A two-node Ray cluster with token auth on, set up as the README tells an operator to
    (tests/scripts/token_cluster.py): the head and the worker run in different folders, the
    worker at its own address (127.0.0.2: a second machine, as far as Ray can tell). Tests
    reach it from subprocesses with `token_cluster.env(...)`, so the session's Ray is left
    alone."""
    import json
    import secrets
    import subprocess
    import sys
    from pathlib import Path

    import psutil

    root = tmp_path_factory.mktemp("token_cluster")
    token = root / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    (root / "head").mkdir()
    (root / "worker").mkdir()
    script = Path(__file__).parent / "scripts" / "token_cluster.py"
    env = TokenCluster("", [], root, token).env("file")
    proc = subprocess.Popen([sys.executable, str(script), str(root / "head"),
                             str(root / "worker")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        info = json.loads(proc.stdout.readline())
        yield TokenCluster(info["address"], info["nodes"], root, token)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # end what it started, by process id
            family = psutil.Process(proc.pid).children(recursive=True) + [proc]
            for p in family:
                p.kill()
            proc.wait()
