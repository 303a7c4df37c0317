"""A two-node Ray cluster with token auth, kept up until stdin closes (tests/test_cluster.py).

Run with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH set, as a cluster operator runs
`ray start` on each node. The head starts in HEAD_DIR and the worker in WORKER_DIR (a
raylet's working directory is its tasks'), and the worker gets its own address, 127.0.0.2,
as a node on a second machine would. Prints one JSON line: the address and the node ids.
"""

import json
import os
import sys

from ray.cluster_utils import Cluster

head_dir, worker_dir = sys.argv[1], sys.argv[2]
os.chdir(head_dir)
cluster = Cluster(initialize_head=True,
                  head_node_args={"num_cpus": 1, "include_dashboard": False})
try:
    os.chdir(worker_dir)
    worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.2")
    cluster.wait_for_nodes()
    os.chdir(head_dir)
    print(json.dumps({"address": cluster.address,
                      "nodes": sorted([cluster.head_node.node_id, worker.node_id])}), flush=True)
    sys.stdin.read()  # until the test closes the pipe (or dies)
finally:
    cluster.shutdown()
