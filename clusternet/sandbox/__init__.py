"""
clusternet.sandbox: a small, faithful Kubernetes API server on Twisted.
"""

from clusternet.sandbox._server import (
    SandboxMaterial,
    SandboxServer,
    load_or_create_material,
    make_sandbox,
)
from clusternet.sandbox._store import Store
from clusternet.sandbox._store_api import (
    ObjectReader,
    ObjectWriter,
    StoreError,
    StoreEvent,
)

__all__ = [
    "ObjectReader",
    "ObjectWriter",
    "SandboxMaterial",
    "SandboxServer",
    "Store",
    "StoreError",
    "StoreEvent",
    "load_or_create_material",
    "make_sandbox",
]
