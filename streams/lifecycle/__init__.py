"""The order lifecycle as plain functions; see engine.py."""
from .engine import Step, advance, answer, apply, retained
from .policy import Policy, RegionRules

__all__ = ["Policy", "RegionRules", "Step", "advance", "answer", "apply", "retained"]
