"""The order API served by each worker over HTTP (Faust web views)."""
from __future__ import annotations


def register_views(worker) -> None:
    """Add the order API's routes to the worker's Faust app."""
