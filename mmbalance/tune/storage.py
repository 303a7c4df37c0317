"""Whether a sweep's storage can serve every node of the cluster it runs on.

Tune writes each trial's checkpoints and results to `<storage>/<name>` from the node the
trial runs on, and restores a trial (after a crash, a lost node, `--resume`) from there on
whatever node it lands next. On a cluster that spans several machines, a folder on one
machine's own disk is therefore not enough: the storage must be a network file system
mounted at the same path on every node (NFS, Lustre, CephFS, ...) or a URI that pyarrow
opens (s3://, gs://, abfs://, hdfs://). Refused before the sweep starts, in one line that
says what to set, instead of trials failing on other nodes later.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmbalance.errors import ConfigError

# file systems that one mount can share between machines (psutil / /proc/mounts names)
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "glusterfs",
    "ocfs2", "gfs2", "afs", "panfs", "wekafs", "9p", "virtiofs",
})


def filesystem_type(path: str | Path) -> str:
    """The type of the file system holding `path` (or its nearest existing parent);
    '' where it cannot be told."""
    import psutil

    here = Path(path).expanduser().absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    here = here.resolve()
    best, kind = "", ""
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint.rstrip(os.sep) or os.sep
        inside = here == Path(mount) or str(here).startswith(mount.rstrip(os.sep) + os.sep)
        if inside and len(mount) > len(best):
            best, kind = mount, part.fstype
    return kind


def is_shared(storage: str) -> bool:
    """A URI (other than file://) or a folder on a network file system."""
    scheme, sep, rest = storage.partition("://")
    if sep and scheme != "file":
        return True
    kind = filesystem_type(rest if sep else storage)
    return kind in NETWORK_FILESYSTEMS or kind.startswith("fuse.")


def require_shared(storage: str, hosts: list[str], where: str) -> None:
    """Refuse local storage for a cluster whose nodes sit on more than one machine; `where`
    names the setting in the message (the YAML key, or the --out folder it defaults to)."""
    if len(hosts) < 2 or is_shared(storage):
        return
    kind = filesystem_type(storage.partition("://")[2] or storage) or "unknown"
    raise ConfigError(
        f"{where}: {storage} is on this machine's own disk ({kind}), which the cluster's "
        f"other nodes ({len(hosts)} machines: {', '.join(hosts)}) cannot reach; a sweep on "
        "several machines needs shared storage: set `storage:` in the sweep YAML to a "
        "network folder mounted at the same path on every node (NFS, ...) or to a URI "
        "(s3://bucket/sweeps, gs://...)")
