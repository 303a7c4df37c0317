"""Time `ray_session(address)` failing for each address given; print one JSON line.

Imports happen first, so the times are the connection checks alone (tests/test_cluster.py
bounds them)."""

import json
import sys
import time

from mmbalance.errors import UserError
from mmbalance.ray_session import ray_session

report = []
for address in sys.argv[1:]:
    t0 = time.monotonic()
    try:
        with ray_session(address):
            error = None
    except UserError as exc:
        error = str(exc)
    report.append({"address": address, "seconds": time.monotonic() - t0, "error": error})
print(json.dumps(report))
