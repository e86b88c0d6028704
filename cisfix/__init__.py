"""cisfix: audit and safely fix CIS Kubernetes Benchmark findings on Kubernetes nodes."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "Runner"]


def __getattr__(name: str):
    # Imported lazily so `cisfix --version` does not pay for ruamel.yaml and friends.
    if name == "Runner":
        from .api import Runner

        return Runner
    raise AttributeError(f"module 'cisfix' has no attribute {name!r}")
