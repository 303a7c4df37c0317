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
    """One local Ray cluster for the whole session (start-up costs seconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024**2, configure_logging=False)
    yield ray
    ray.shutdown()


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
