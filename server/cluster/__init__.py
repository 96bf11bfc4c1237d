"""Several nodes as one service: presence, cluster events and catch-up over a broker."""

from server.cluster.node import Cluster

__all__ = ["Cluster"]
