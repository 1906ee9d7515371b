"""Training one cell (the `train` rule, workflow/rules/train.smk): the models, the losses,
one update step, the checkpoint policy and the loop; `slotcov plan` prices the train jobs.

Modules: models (the model family, `build_cell`), losses (regularisers), step (one update and
the non-finite check), checkpoint (what a checkpoint holds, when it is written), loop (the
training loop and `slotcov train`), flops and plan (cost of a train job).
`from slotcov.train import train, load_trained` reaches the loop's public names.
"""
from slotcov import reexport

__getattr__ = reexport(__name__, "loop")
