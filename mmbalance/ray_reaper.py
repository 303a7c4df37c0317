"""Ends a local Ray cluster's processes when the driver that started it is gone.

Started by `mmbalance.ray_session` (run as a script, in its own session so Ctrl-C and a
killed process group leave it alone; it imports nothing of mmbalance). It reads
`PID CREATE_TIME` lines on stdin: the cluster's processes. End of input means the driver
closed the pipe (a normal shutdown) or died (the kernel closes it, even after SIGKILL);
either way it kills every listed process that is still the one it was (same creation time,
so a reused PID is never hit). Ray's kernel fate-sharing takes the GCS and raylet down with
the driver, but its dashboard and runtime-env agents wait about a minute on the dead GCS
before they exit.
"""

from __future__ import annotations

import sys


def reap(lines: list[str]) -> int:
    """Kill the listed processes that still run; return how many were killed."""
    import psutil

    killed = 0
    for line in lines:
        try:
            pid, created = line.split()
            proc = psutil.Process(int(pid))
            if abs(proc.create_time() - float(created)) < 1e-3:
                proc.kill()
                killed += 1
        except (ValueError, psutil.Error):
            continue
    return killed


def main() -> int:
    lines = list(sys.stdin)  # until the driver closes the pipe or dies
    reap(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
