import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


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
