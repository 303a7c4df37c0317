"""Start a local cluster the way the commands do, print its processes as JSON, then wait
(tests/test_cluster.py kills this driver and watches the cluster go). A bystander, a child
this driver started before the cluster, must be left alone."""

import json
import subprocess
import sys

import psutil

from mmbalance.ray_session import ray_session

bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with ray_session("local", num_cpus=1):
    import ray

    ray.get(ray.remote(lambda: 1).remote())  # a worker too
    pids = [p.pid for p in psutil.Process().children(recursive=True)  # reaper included
            if p.pid != bystander.pid]
    print(json.dumps({"pids": pids, "bystander": bystander.pid}), flush=True)
    sys.stdin.read()
