"""A Ray cluster of several nodes on this one machine, every node on 127.0.0.1.

For capacity planning (``scripts/scale_out.py``) and multi-node tests: a head with no CPUs (as in
cluster.yaml, so agents run only on worker nodes) and ``worker_nodes`` nodes of
``cpus_per_node`` CPUs, built with ``ray.cluster_utils.Cluster``, with this process connected as
the driver. Leaving the context disconnects and stops every node it started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def loopback_cluster(worker_nodes: int, cpus_per_node: int = 1) -> Iterator[Any]:
    """Start the cluster, connect to it, yield the ``Cluster``; stop it all on exit."""
    import ray
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialized in this process; shut it down first")
    # Ray replaces a 127.0.0.1 address by the host's outward-facing IP unless multi-node
    # clusters are switched off for this process; the nodes listen on 127.0.0.1 only, so the
    # driver must keep the loopback address. Restored on exit.
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    loopback = {"node_ip_address": "127.0.0.1"}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, **loopback},
    )
    try:
        for _ in range(worker_nodes):
            cluster.add_node(num_cpus=cpus_per_node, **loopback)
        cluster.wait_for_nodes()
        ray.init(
            address=cluster.address,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            logging_level="warning",
        )
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = saved
