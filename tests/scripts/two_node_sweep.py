"""Run a tiny sweep on a two-node Ray cluster (ray.cluster_utils.Cluster) through the CLI's
--address; print the node ids the trials ran on and the driver's view, as JSON."""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import pandas as pd
from ray.cluster_utils import Cluster

from mmbalance.cli import main

config, out = sys.argv[1], Path(sys.argv[2])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
try:
    import ray

    ray.init(address=cluster.address, log_to_driver=False)
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    ray.shutdown()
    rc = main(["sweep", config, "--out", str(out), "--address", cluster.address, "--no-progress"])
    trials = pd.read_parquet(out / "trials.parquet") if rc == 0 else None
    ids = []
    for result in (out / "tiny").glob("*/result.json"):
        ids += [json.loads(line)["node_id"] for line in result.read_text().splitlines() if line]
    print(json.dumps({"rc": rc, "nodes": nodes, "trial_nodes": sorted(set(ids)),
                      "reports": 0 if trials is None else len(trials)}))
finally:
    cluster.shutdown()
