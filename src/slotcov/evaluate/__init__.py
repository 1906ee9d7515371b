"""Scoring trained cells (the `evaluate` and `probe` rules): segmentation metrics, the
evaluation of a run on its split, and the property probe of Table 2.

Modules: metrics (FG-ARI, mBO, block masks), evaluation (`slotcov evaluate`), probing
(`slotcov probe`). `from slotcov.evaluate import evaluate_model` reaches the evaluation's names.
"""


def __getattr__(name: str):
    """The public names of `evaluation` (imported on first use: importing the package stays light)."""
    import importlib

    module = importlib.import_module(f"{__name__}.evaluation")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
