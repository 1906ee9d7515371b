"""Training one cell (the `train` rule, workflow/rules/train.smk): the models, the losses,
one update step, the checkpoint policy and the loop; `slotcov plan` prices the train jobs.

Modules: models (the model family, `build_cell`), losses (regularisers), step (one update and
the non-finite check), checkpoint (what a checkpoint holds, when it is written), loop (the
training loop and `slotcov train`), flops and plan (cost of a train job).
`from slotcov.train import train, load_trained` reaches the loop's public names.
"""


def __getattr__(name: str):
    """The public names of `loop` (imported on first use: importing the package stays light)."""
    import importlib

    module = importlib.import_module(f"{__name__}.loop")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
