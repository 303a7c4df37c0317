"""Connecting to Ray, or starting it, in one place: `with ray_session(address): ...`.

Every command that uses Ray (compare and evaluate on Ray tasks, sweep, learn) enters this
before it creates its output folder, so a wrong address or token costs seconds, says what is
wrong in one line and leaves nothing behind.

Which cluster: the `address` given (`--address`, or a learn YAML's `address:`), else
`RAY_ADDRESS`, else a new local cluster. `local` always starts one; `auto` joins the cluster
that `ray start` runs on this machine; `ray://HOST:PORT` goes through Ray Client; anything
else is a head's `HOST:PORT` (GCS port, 6379 by default).

An existing cluster is checked before `ray.init` (which otherwise retries for minutes):

1. the token: with `RAY_AUTH_MODE=token`, Ray reads it from `RAY_AUTH_TOKEN`, else the file
   `RAY_AUTH_TOKEN_PATH`, else `~/.ray/auth_token`, and aborts the whole process when that
   file is missing or empty: checked here first;
2. a TCP connect to the address (`CONNECT_TIMEOUT_S`);
3. one request to the cluster's GCS (`PROBE_TIMEOUT_S`): an authentication error becomes one
   line saying which token was sent, where it was read from, and that `RAY_AUTH_MODE=token`
   must be set on every client and node (Ray 2.60 does not turn token auth on by itself for
   an explicit address);
4. a node of that cluster must run on this machine (a driver attaches to a local raylet;
   elsewhere use Ray Client).

A local cluster mmbalance starts binds to loopback: its node address is 127.0.0.1, so the
GCS, raylet, workers and agents listen on 127.0.0.1 only, and no dashboard runs. Ray's
dashboard and runtime-env agents outlive a SIGKILLed driver by about a minute (they wait on
the dead GCS to report the raylet's death), so a small reaper (`mmbalance/ray_reaper.py`)
ends the cluster's processes as soon as the driver is gone.

If Ray is already initialised (a caller's own session, e.g. the test suite's), the session
uses it and leaves it running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmbalance.errors import UserError

CONNECT_TIMEOUT_S = 3.0
PROBE_TIMEOUT_S = 2.0
TOKEN_HINT = ("`RAY_AUTH_MODE=token` must be set on every client and every node (Ray does not "
              "turn token auth on by itself for an explicit address)")


@contextmanager
def ray_session(address: str | None = None, origin: str = "--address",
                **local_options) -> Iterator[str]:
    """Connect to the cluster at `address` (see the module docstring), or start a local one
    with `local_options` (e.g. `num_cpus`); shut down on exit what this session started.
    `origin` names where the address came from, for error messages. Yields one line saying
    where work runs ('' when Ray was already initialised by the caller)."""
    import ray

    if ray.is_initialized():
        yield ""
        return
    target, label = _target(address, origin)
    reaper = None
    if target is None:
        reaper = _start_local(**local_options)
    else:
        _connect(target, label)
    try:
        yield _describe(target)
    finally:
        ray.shutdown()
        if reaper is not None:
            reaper.stdin.close()  # the reaper ends whatever of the cluster is left
            reaper.wait(timeout=30)


@contextmanager
def ray_session_if(needed: bool, address: str | None,
                   origin: str = "--address") -> Iterator[None]:
    """A Ray session for commands that use Ray, entered before they create their output
    folder (a wrong address or token fails in seconds and leaves nothing behind); says on
    stdout where the work runs. Nothing when not `needed`."""
    if not needed:
        yield
        return
    with ray_session(address, origin=origin) as where:
        if where:
            print(f"Ray: {where}", flush=True)
        yield


def _describe(target: str | None) -> str:
    import ray

    res = ray.cluster_resources()
    counts = f"{res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"
    if target is None:
        return f"new local cluster on 127.0.0.1 ({counts})"
    nodes = [n for n in ray.nodes() if n["Alive"]]
    return (f"cluster at {target}: {len(nodes)} nodes on {len(cluster_hosts())} machines, "
            f"{counts}")


def cluster_hosts() -> list[str]:
    """The distinct addresses of the connected cluster's live nodes (several raylets on one
    machine share one address; a real multi-node cluster has several)."""
    import ray

    return sorted({n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]})


# ------------------------------------------------------------------ which cluster
def _target(address: str | None, origin: str) -> tuple[str | None, str]:
    """(the address to connect to, or None to start a local cluster; its label for messages)."""
    if address:
        return (None if address == "local" else address), f"{origin} {address}"
    env = os.environ.get("RAY_ADDRESS", "")
    if env and env != "local":
        return env, f"RAY_ADDRESS={env}"
    return None, ""


def _connect(target: str, label: str) -> None:
    import ray

    token = token_source(label)
    if target.startswith("ray://"):
        host, port = _host_port(target[len("ray://"):], label, default_port=10001)
        try:
            import grpc  # noqa: F401 - Ray Client's transport
        except ImportError:
            raise UserError(f"{label}: Ray Client needs `pip install 'ray[client]'`; or run "
                            "the command on a node of the cluster with its HOST:PORT") from None
        _tcp_check(host, port, label)
        ray.init(address=target, log_to_driver=False, configure_logging=False)
        return
    if target == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            with _quiet_stderr():  # Ray warns when several clusters run here
                target = canonicalize_bootstrap_address("auto")
        except ConnectionError:
            raise UserError(f"{label}: no Ray cluster started with `ray start` runs on this "
                            "machine; give the head's HOST:PORT") from None
    host, port = _host_port(target, label)
    _tcp_check(host, port, label)
    nodes = _probe_gcs(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}", label,
                       token)
    _require_local_node(nodes, label)
    ray.init(address=target, log_to_driver=False, configure_logging=False)


def _host_port(text: str, label: str, default_port: int | None = None) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep and default_port is not None:
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{label}: expected HOST:PORT (the head's GCS port, e.g. "
                        "10.0.0.5:6379), 'auto', 'local' or ray://HOST:PORT")
    return host, int(port)


def _tcp_check(host: str, port: int, label: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except socket.gaierror:
        raise UserError(f"{label}: unknown host {host!r}") from None
    except TimeoutError:
        raise UserError(f"{label}: no answer from {host}:{port} within {CONNECT_TIMEOUT_S:g} s "
                        "(a firewall, or no such machine?)") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"{label}: nothing listens at {host}:{port} ({reason.lower()}); start "
                        f"the head with `ray start --head --port={port}` or fix the "
                        "address") from None


# ------------------------------------------------------------------ the token
def token_source(label: str = "Ray") -> str | None:
    """Where Ray will read its auth token from (None when token auth is off), after checking
    that it is there: Ray aborts the process, rather than raising, when it is not."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return None
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    path_var = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(path_var).expanduser() if path_var else Path.home() / ".ray" / "auth_token"
    where = f"RAY_AUTH_TOKEN_PATH={path_var}" if path_var else str(path)
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise UserError(f"{label}: RAY_AUTH_MODE=token but the token file {where} cannot be "
                        f"read ({exc.strerror or exc}); copy the cluster's token there "
                        "(mode 0600) or set RAY_AUTH_TOKEN") from None
    if not text:
        raise UserError(f"{label}: RAY_AUTH_MODE=token but the token file {where} is empty; "
                        "copy the cluster's token there (mode 0600) or set RAY_AUTH_TOKEN")
    return where


def _auth_message(label: str, token: str | None) -> str:
    if token is None:
        return (f"{label}: the cluster requires token authentication and this client sent no "
                "token: set RAY_AUTH_MODE=token and give the cluster's token in "
                f"~/.ray/auth_token (mode 0600), RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN; "
                f"{TOKEN_HINT}")
    return (f"{label}: the cluster refused the token from {token}; give the token the cluster "
            f"was started with (`ray get-auth-token` on the head prints it); {TOKEN_HINT}")


# ------------------------------------------------------------------ the GCS probe
def _probe_gcs(address: str, label: str, token: str | None) -> dict:
    """One bounded request to the GCS at `address`: its live nodes, or one clear line."""
    from ray._raylet import InnerGcsClient
    from ray.exceptions import AuthenticationError

    t0 = time.monotonic()
    try:
        # Ray's C++ client logs each failed attempt to stderr, and waits 5 s per channel
        with _quiet_stderr(), _ray_config(gcs_rpc_server_connect_timeout_s=PROBE_TIMEOUT_S):
            client = InnerGcsClient.standalone(address, None, int(PROBE_TIMEOUT_S * 1000))
            nodes = client.get_all_node_info(timeout=PROBE_TIMEOUT_S)
    except AuthenticationError:
        raise UserError(_auth_message(label, token)) from None
    except Exception as exc:  # noqa: BLE001 - Ray raises its own RPC error types here
        waited = time.monotonic() - t0
        why = (str(exc).splitlines() or [""])[0][:120]
        raise UserError(f"{label}: {address} accepts connections but is not a Ray GCS that "
                        f"answers ({type(exc).__name__} after {waited:.0f} s: {why}); give the "
                        "head's GCS port (6379 unless `ray start --head --port` said "
                        "otherwise)") from None
    return nodes


def _require_local_node(nodes: dict, label: str, local_ids: set[str] | None = None) -> None:
    """A driver attaches to a raylet on its own machine; without one, `ray.init` waits a
    minute and fails with a traceback."""
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    if local_ids is None:
        from ray._private.services import find_node_ids

        local_ids = set(find_node_ids())
    alive = {info.node_id.hex() for info in nodes.values()
             if info.state == GcsNodeInfo.GcsNodeState.ALIVE}
    if not alive & local_ids:
        raise UserError(f"{label}: no node of that cluster runs on this machine; run the "
                        "command on one of its nodes (e.g. the head), join this machine with "
                        "`ray start --address=HOST:PORT`, or use Ray Client (ray://HEAD:10001)")


@contextmanager
def _ray_config(**values: float) -> Iterator[None]:
    """Ray's C++ settings (read from `RAY_<name>` variables) changed for this process only,
    for the duration of the block."""
    from ray._raylet import Config

    saved = {f"RAY_{k}": os.environ.get(f"RAY_{k}") for k in values}
    os.environ.update({f"RAY_{k}": str(int(v)) for k, v in values.items()})
    Config.initialize("")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        Config.initialize("")


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# ------------------------------------------------------------------ a local cluster
def _start_local(**options) -> subprocess.Popen:
    """`ray.init` of a new local cluster bound to loopback, and its reaper."""
    import ray
    from ray._private import ray_constants

    # Ray resolves a node address of 127.0.0.1 to the machine's routable address unless it
    # believes clustering is off (its macOS/Windows default): say so for this start only
    env_name = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    saved_env, saved_flag = os.environ.get(env_name), ray_constants.ENABLE_RAY_CLUSTER
    before = _children()  # the caller's own subprocesses are not the cluster's
    os.environ[env_name] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 configure_logging=False, **options)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(env_name, None)
        else:
            os.environ[env_name] = saved_env
    # run by path: it needs nothing of mmbalance, and works where the package is not installed
    reaper = subprocess.Popen([sys.executable, str(Path(__file__).with_name("ray_reaper.py"))],
                              stdin=subprocess.PIPE, text=True, start_new_session=True)
    for pid, created in _children() - before:
        if pid != reaper.pid:
            reaper.stdin.write(f"{pid} {created!r}\n")
    reaper.stdin.flush()
    return reaper


def _children() -> set[tuple[int, float]]:
    """This process's descendants, as (pid, creation time)."""
    import psutil

    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            found.add((proc.pid, proc.create_time()))
        except psutil.NoSuchProcess:
            pass
    return found


# ------------------------------------------------------------------ resource requests
def known_resources(address: str | None) -> dict[str, float] | None:
    """What the cluster a command will use has, when that is known without joining it: the
    running session's cluster, or this machine for a new local cluster (Ray counts its CPUs
    and CUDA devices); None for a cluster elsewhere (check once connected)."""
    import ray

    if ray.is_initialized():
        return _node_resources()
    if _target(address, "--address")[0] is not None:
        return None
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus),
            "node_CPU": float(os.cpu_count() or 1), "node_GPU": float(gpus)}


def _node_resources() -> dict[str, float]:
    """The connected cluster's totals (CPU, GPU) and its largest node's (node_CPU, node_GPU):
    a request of one bundle must fit on one node."""
    import ray

    total = ray.cluster_resources()
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    return {"CPU": float(total.get("CPU", 0)), "GPU": float(total.get("GPU", 0)),
            "node_CPU": max((float(n.get("CPU", 0)) for n in nodes), default=0.0),
            "node_GPU": max((float(n.get("GPU", 0)) for n in nodes), default=0.0)}


def require_resources(what: str, need: dict[str, float], have: dict[str, float] | None = None,
                      one_node: bool = True, per: str = "run") -> None:
    """Refuse in one line a request (per task or trial: {"CPU": n, "GPU": g}) that the
    cluster can never grant: Ray would queue it forever, printing nothing or only Tune's
    "No trial is running" once a minute. `have`: from `known_resources`, else the connected
    cluster's; `one_node`: the request is one bundle, so one node must hold it all."""
    have = have if have is not None else _node_resources()
    for name in ("GPU", "CPU"):
        amount = float(need.get(name, 0) or 0)
        if amount <= 0:
            continue
        limit = have.get(f"node_{name}" if one_node else name, 0.0)
        if amount > limit + 1e-9:
            where = "any one node of the cluster" if one_node else "the cluster"
            raise UserError(f"{what}: asks for {amount:g} {name}(s) per {per}; {where} has "
                            f"{limit:g}, so it would wait forever; lower the request or use "
                            "a cluster that has them")
