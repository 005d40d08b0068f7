"""
Shared test configuration: a deterministic Hypothesis profile.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "clusternet",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("clusternet")
