"""The bottleneck regularisers: VICReg covariance and variance terms, the cosine loss, the projection head."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from slotcov.cells import LOSS_TERMS as TERMS  # the regulariser's terms (plain data, beside REG)


def covariance_loss(z: torch.Tensor, divide_by: str = "d2") -> torch.Tensor:
    """Sum of squared off-diagonal entries of the unbiased covariance of rows `z` [N, D].

    divide_by="d2" divides by D^2 (the paper's COVLOSS cells), "d" by D (VICReg, Table 3).
    """
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = (z.T @ z) / (n - 1)
    off_diag = cov.pow(2).sum() - cov.diagonal().pow(2).sum()
    return off_diag / {"d2": d * d, "d": d}[divide_by]


def variance_loss(z: torch.Tensor, gamma: float, eps: float = 1e-4) -> torch.Tensor:
    """Mean over dimensions of max(0, gamma - sqrt(Var(z_j) + eps)) on rows `z` [N, D]."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def cosine_loss(slots: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Pairwise cosine loss on slots [B, K, D], the authors' normalisation.

    Over all K*K ordered slot pairs of each image: 1 - cos on the diagonal (zero) and
    max(0, cos - margin) off it; averaged over the B*K*K pairs.
    """
    s = F.normalize(slots, dim=-1, eps=1e-8)
    cos = s @ s.transpose(1, 2)  # [B, K, K]
    eye = torch.eye(slots.shape[1], dtype=torch.bool, device=slots.device)
    per_pair = torch.where(eye, 1.0 - cos, F.relu(cos - margin))
    return per_pair.mean()


class ProjectionHead(nn.Module):
    """VICReg expander: Linear-LayerNorm-ReLU blocks then a final Linear, or the identity."""

    def __init__(self, in_dim: int, dims: list[int] | None):
        super().__init__()
        layers: list[nn.Module] = []
        for i, out in enumerate(dims or []):
            layers.append(nn.Linear(in_dim, out))
            if i < len(dims) - 1:
                layers += [nn.LayerNorm(out), nn.ReLU()]
            in_dim = out
        self.net = nn.Sequential(*layers)  # empty Sequential is the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def regulariser_terms(slots: torch.Tensor, head: nn.Module, reg: dict) -> dict[str, torch.Tensor]:
    """The regulariser terms of a cell's `reg` config, unweighted, keyed cov/var/cos.

    reg["method"] is one of: none, covloss (cov on projections), cosineloss (cosine on
    raw slots), vicreg (variance + covariance on projections).
    """
    method = reg["method"]
    terms: dict[str, torch.Tensor] = {}
    if method in ("covloss", "vicreg"):
        z = head(slots.flatten(0, 1).float())  # all B*K slots of the batch as rows
        terms["cov"] = covariance_loss(z, reg["cov_divide_by"])
        if method == "vicreg" or reg["var_weight"] > 0:
            terms["var"] = variance_loss(z, reg["gamma"], reg["eps"])
    elif method == "cosineloss":
        terms["cos"] = cosine_loss(head(slots.float()), reg["cosine_margin"])
    elif method != "none":
        raise ValueError(f"unknown regulariser method {method!r}")
    return terms


def term_weights(reg: dict, step: int | None = None) -> dict[str, float]:
    """The weight of each regulariser term at training step `step` (0-based; None = after any ramp).

    The cosine weight ramps linearly over reg["cosine_warmup"] steps as the authors' trainer
    does (their step count starts at 1): cosine_weight * min(1, (step + 1) / cosine_warmup).
    """
    weights = {name: reg[key] for name, key in TERMS.items()}
    ramp = reg["cosine_warmup"]
    if ramp and step is not None:
        weights["cos"] *= min(1.0, (step + 1) / ramp)
    return weights


def term_names(terms: dict) -> list[str]:
    """The names of `terms` in TERMS order; ValueError for a name TERMS lacks (it would be neither
    weighted, logged nor checked for a non-finite value)."""
    unknown = sorted(set(terms) - set(TERMS))
    if unknown:
        raise ValueError(f"regulariser term(s) {unknown} are not in slotcov.train.losses.TERMS ({', '.join(TERMS)})")
    return [name for name in TERMS if name in terms]


def weighted_total(recon: torch.Tensor, terms: dict[str, torch.Tensor], reg: dict,
                   step: int | None = None) -> torch.Tensor:
    """recon + the weighted regulariser terms of `reg` at training step `step`."""
    weights = term_weights(reg, step)
    total = recon
    for name in term_names(terms):
        total = total + weights[name] * terms[name]
    return total
