"""Start a local cluster the way the commands do, print its processes as JSON, then wait
(tests/test_cluster.py kills this driver and watches the cluster go)."""

import json
import sys

import psutil

from mmbalance.ray_session import ray_session

with ray_session("local", num_cpus=1):
    import ray

    ray.get(ray.remote(lambda: 1).remote())  # a worker too
    pids = [p.pid for p in psutil.Process().children(recursive=True)]  # reaper included
    print(json.dumps({"pids": pids}), flush=True)
    sys.stdin.read()
