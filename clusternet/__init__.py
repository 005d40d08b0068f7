"""
Clusternet in Python: reach many Kubernetes child clusters from one parent.
"""

from clusternet._version import __version__

__all__ = ["__version__"]
