"""Scoring trained cells (the `evaluate` and `probe` rules): segmentation metrics, the
evaluation of a run on its split, and the property probe of Table 2.

Modules: metrics (FG-ARI, mBO, block masks), evaluation (`slotcov evaluate`), probing
(`slotcov probe`). `from slotcov.evaluate import evaluate_model` reaches the evaluation's names.
"""
from slotcov import reexport

__getattr__ = reexport(__name__, "evaluation")
