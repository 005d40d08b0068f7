"""
The hub: aggregated API server C{proxies.clusternet.io} in the parent cluster.
"""

from clusternet.hub._options import HubOptions
from clusternet.hub._service import make_hub_service

__all__ = ["HubOptions", "make_hub_service"]
