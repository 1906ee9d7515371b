"""One training update and the check that its numbers stay finite.

`Update` is the step: forward, loss, backward, clipping, optimizer. It hands back the step's
numbers (loss terms, gradient norm) as `StepNumbers` on their way to the host; `NonFiniteMonitor`
checks them. On CUDA the copy is asynchronous and a step is checked one step late (while the GPU
runs the next one), so the GPU never idles for the check; `settle()` checks at once and runs
before any checkpoint, so no checkpoint holds weights of an unchecked step.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from slotcov.train.losses import regulariser_terms, term_names, weighted_total


class NonFiniteLoss(RuntimeError):
    """The loss or the gradient norm stopped being finite at update `step` (0-based): the run diverged.

    `terms`: the non-finite quantities by name; `last_finite_loss`: the loss of the last checked step
    before it (None when unknown).
    """

    def __init__(self, message: str, step: int, terms: list[str], last_finite_loss: float | None):
        super().__init__(message)
        self.step, self.terms, self.last_finite_loss = step, terms, last_finite_loss


@dataclass
class StepNumbers:
    """The loss terms and gradient norm of update `step`, copied to `host` (done when `event` is)."""
    step: int
    lr: float
    names: list[str]
    host: torch.Tensor
    event: torch.cuda.Event | None

    def values(self) -> dict[str, float]:
        if self.event is not None:
            self.event.synchronize()
        return dict(zip(self.names, self.host.tolist()))


class Update:
    """forward -> reconstruction + regulariser loss -> backward -> clip -> Adam, for one batch."""

    def __init__(self, model, head, cfg: dict, device: torch.device):
        t = cfg["train"]
        self.model, self.head, self.cfg, self.device = model, head, cfg, device
        self.params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=t["lr"], fused=device.type == "cuda")
        self.clip = t["grad_clip"] or float("inf")
        self.skip_nonfinite = t["skip_nonfinite"]
        self.use_amp = device.type == "cuda" and t["amp"] == "bf16"  # fp32 (the paper's) unless opted in
        compile_ = t["compile"]  # torch.compile traces at the first call: after a resume loaded weights
        compiled = compile_ is True or (compile_ == "auto" and device.type == "cuda")
        self.forward = torch.compile(model) if compiled else model

    def _outputs(self, batch: dict) -> dict:
        """The model's outputs; a torch.compile failure (no compiler, unsupported op) falls back to eager."""
        try:
            return self.forward(batch)
        except Exception as err:
            if self.forward is self.model or isinstance(err, torch.OutOfMemoryError):
                raise
            print(f"warning: torch.compile failed ({type(err).__name__}: {str(err)[:200]}); "
                  "continuing without compilation", file=sys.stderr)
            self.forward = self.model
            return self.forward(batch)

    def __call__(self, batch: dict, step: int, lr: float) -> StepNumbers | None:
        """Update the weights on `batch` at learning rate `lr`; None when a non-finite batch was skipped."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        dev = self.device.type
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=self.use_amp):
            outputs = self._outputs(batch)
        recon = F.mse_loss(outputs["recon"].float(), outputs["target"].float())
        with torch.autocast(dev, enabled=False):
            terms = regulariser_terms(outputs["slots"].float(), self.head, self.cfg["reg"])
        loss = weighted_total(recon, terms, self.cfg["reg"], step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        names = ["loss", "recon", "grad_norm"] + term_names(terms)
        stats = torch.stack([loss, recon, grad_norm] + [terms[k] for k in names[3:]]).detach()
        if self.skip_nonfinite and not bool(torch.isfinite(stats).all()):
            detail = ", ".join(f"{k}={v:.6g}" for k, v in zip(names, stats.tolist()))
            print(f"warning: step {step}: non-finite ({detail}); batch skipped", file=sys.stderr)
            return None
        host = stats.to("cpu", non_blocking=True)  # recorded before the optimizer step: the check never waits for it
        event = torch.cuda.Event() if dev == "cuda" else None
        if event is not None:
            event.record()
        self.opt.step()
        return StepNumbers(step, lr, names, host, event)


class NonFiniteMonitor:
    """Stops the run (NonFiniteLoss) at the first step whose numbers are not finite; passes checked ones to `report`."""

    def __init__(self, device: torch.device, report: Callable[[int, float, dict], None], ckpt_path: Path):
        self.late = device.type == "cuda"  # elsewhere the numbers are on the host at once: check each step
        self.report, self.ckpt_path = report, ckpt_path
        self.pending: StepNumbers | None = None
        self.last_loss: float | None = None  # of the last step checked finite

    def push(self, numbers: StepNumbers) -> None:
        """Check the step held back (one step late), hold `numbers`; on the CPU check them now."""
        self.settle()
        self.pending = numbers
        if not self.late:
            self.settle()

    def settle(self) -> None:
        """Check the held step now: before a checkpoint, at a stop or signal."""
        numbers, self.pending = self.pending, None
        if numbers is None:
            return
        named = numbers.values()
        bad = [k for k, v in named.items() if not np.isfinite(v)]
        if bad:
            detail = ", ".join(f"{k}={v:.6g}" for k, v in named.items())
            kept = self.ckpt_path if self.ckpt_path.exists() else "none"
            raise NonFiniteLoss(f"step {numbers.step}: non-finite loss or gradient ({detail}); "
                                f"last good checkpoint kept at {kept}", numbers.step, bad, self.last_loss)
        self.last_loss = named["loss"]
        self.report(numbers.step, numbers.lr, named)
