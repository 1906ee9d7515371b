"""Each regulariser against a straightforward loop formula, and how the terms are wired into the loss."""
import copy
import itertools

import numpy as np
import pytest
import torch

from slotcov.cells import PAPER_CELLS
from slotcov.train.losses import ProjectionHead, cosine_loss, covariance_loss, regulariser_terms, variance_loss

REG = PAPER_CELLS["cmdsprites/sa"]["reg"]  # every regulariser key (a resolved cell has them all), weights 0


def _cov_loop(z):
    z = z.double().numpy()
    n, d = z.shape
    mean = z.mean(axis=0)
    total = 0.0
    for i, j in itertools.product(range(d), range(d)):
        if i != j:
            c = sum((z[r, i] - mean[i]) * (z[r, j] - mean[j]) for r in range(n)) / (n - 1)
            total += c * c
    return total


@pytest.mark.parametrize("divide_by,denom", [("d2", 36), ("d", 6)])
def test_covariance_loss(divide_by, denom):
    z = torch.randn(20, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert covariance_loss(z, divide_by).item() == pytest.approx(_cov_loop(z) / denom, rel=1e-10)
    assert np.allclose(np.cov(z.numpy(), rowvar=False), (z - z.mean(0)).T @ (z - z.mean(0)) / 19)


def test_covariance_loss_is_zero_for_decorrelated_rows():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert covariance_loss(z).item() == pytest.approx(0.0, abs=1e-12)


def test_variance_loss():
    z = torch.randn(50, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * torch.tensor(
        [0.1, 0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    expected = np.mean([max(0.0, 1.0 - np.sqrt(np.var(z[:, j].numpy(), ddof=1) + 1e-4)) for j in range(5)])
    assert variance_loss(z, gamma=1.0).item() == pytest.approx(expected, rel=1e-10)
    assert variance_loss(z, gamma=0.0).item() == 0.0


def test_cosine_loss():
    s = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    total = 0.0
    for b in range(3):
        for i in range(4):
            for j in range(4):
                u, v = s[b, i].numpy(), s[b, j].numpy()
                c = float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
                total += (1 - c) if i == j else max(0.0, c - 0.2)
    assert cosine_loss(s).item() == pytest.approx(total / (3 * 4 * 4), rel=1e-10)
    same = torch.ones(1, 3, 2)  # identical slots: every off-diagonal pair costs 1 - 0.2
    assert cosine_loss(same).item() == pytest.approx(6 * 0.8 / 9)


def test_projection_head_layout_and_identity():
    head = ProjectionHead(64, [1024, 1024, 1024])
    kinds = [type(m).__name__ for m in head.net]
    assert kinds == ["Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU", "Linear"]
    x = torch.randn(2, 3, 64)
    assert torch.equal(ProjectionHead(64, None)(x), x)


def test_regulariser_terms_by_method():
    slots = torch.randn(4, 5, 8)
    ident = ProjectionHead(8, None)
    assert regulariser_terms(slots, ident, {**REG, "method": "none"}) == {}
    cov = regulariser_terms(slots, ident, {**REG, "method": "covloss", "cov_divide_by": "d2"})
    assert set(cov) == {"cov"}
    assert cov["cov"].item() == pytest.approx(covariance_loss(slots.reshape(20, 8)).item())
    vic = regulariser_terms(slots, ident, {**REG, "method": "vicreg", "gamma": 1.0, "cov_divide_by": "d"})
    assert set(vic) == {"cov", "var"}
    assert set(regulariser_terms(slots, ident, {**REG, "method": "cosineloss"})) == {"cos"}
    with pytest.raises(ValueError):
        regulariser_terms(slots, ident, {**REG, "method": "bogus"})


# ----------------------------------------------------------------------------- wiring into the loss
# References below are written in numpy from the definitions, independently of slotcov.train.losses.

def _np_params(head: ProjectionHead) -> list:
    """(kind, weight, bias) of each layer of the head, as float64 numpy arrays."""
    out = []
    for m in head.net:
        kind = type(m).__name__
        if kind == "ReLU":
            out.append((kind, None, None))
        else:
            out.append((kind, m.weight.detach().double().numpy().copy(), m.bias.detach().double().numpy().copy()))
    return out


def _np_head(params: list, x: np.ndarray) -> np.ndarray:
    """The projection head's forward pass in numpy: Linear (LayerNorm, ReLU, Linear)*."""
    for kind, w, b in params:
        if kind == "Linear":
            x = x @ w.T + b
        elif kind == "LayerNorm":
            mu, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
            x = (x - mu) / np.sqrt(var + 1e-5) * w + b  # torch's default eps, which the head keeps
        else:
            x = np.maximum(x, 0.0)
    return x


def _np_cov(z: np.ndarray, denom: float) -> float:
    c = np.cov(z, rowvar=False)
    return float((c ** 2).sum() - (np.diag(c) ** 2).sum()) / denom


def _np_var(z: np.ndarray, gamma: float, eps: float = 1e-4) -> float:
    return float(np.mean(np.maximum(0.0, gamma - np.sqrt(z.var(axis=0, ddof=1) + eps))))


def _np_cos(s: np.ndarray, margin: float = 0.2) -> float:
    u = s / np.linalg.norm(s, axis=-1, keepdims=True)
    cos = u @ u.transpose(0, 2, 1)
    eye = np.eye(s.shape[1], dtype=bool)
    return float(np.where(eye, 1.0 - cos, np.maximum(0.0, cos - margin)).mean())


def _real_head(in_dim=6, dims=(12, 5), seed=0) -> ProjectionHead:
    torch.manual_seed(seed)
    head = ProjectionHead(in_dim, list(dims))
    with torch.no_grad():  # non-trivial LayerNorm affine parameters too
        for m in head.net:
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return head


@pytest.mark.parametrize("method,divide_by", [("covloss", "d2"), ("vicreg", "d")])
def test_terms_go_through_a_real_projection_head(method, divide_by):
    """cov and var are computed on head(slots) over all B*K slots, with gradients reaching the head."""
    head = _real_head()
    slots = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    reg = {**REG, "method": method, "cov_divide_by": divide_by, "gamma": 1.0, "var_weight": 0.7, "cov_weight": 0.3}
    terms = regulariser_terms(slots, head, reg)
    x = slots.float().double().reshape(20, 6).numpy()
    params = _np_params(head)
    denom = {"d2": 25, "d": 5}[divide_by]

    def loss(params):
        z = _np_head(params, x)
        return _np_cov(z, denom), _np_var(z, 1.0)

    cov, var = loss(params)
    assert terms["cov"].item() == pytest.approx(cov, rel=1e-4)
    assert terms["var"].item() == pytest.approx(var, rel=1e-4)
    assert var > 0.01 and terms["cov"].item() != pytest.approx(_np_cov(x, 36), rel=1e-2)
    head.zero_grad()
    (terms["cov"] + terms["var"]).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the gradient on the first Linear is the gradient of the numpy formula (central differences)
    h = 1e-6
    for i, j in [(3, 2), (0, 5), (11, 0)]:
        up, down = copy.deepcopy(params), copy.deepcopy(params)
        up[0][1][i, j] += h
        down[0][1][i, j] -= h
        numeric = (sum(loss(up)) - sum(loss(down))) / (2 * h)
        assert head.net[0].weight.grad[i, j].item() == pytest.approx(numeric, rel=1e-3, abs=1e-6)


def test_weighted_total_uses_each_terms_own_weight():
    """recon + 0.3 cov + 0.7 var (gamma 1) on a real head; cosine weighted 0.01 as in the paper's cells."""
    from slotcov.cells import PAPER_CELLS
    from slotcov.train.losses import weighted_total
    head = _real_head()
    slots = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    recon = torch.tensor(0.125, dtype=torch.float64)
    reg = {**REG, "method": "covloss", "projection": [12, 5], "cov_weight": 0.3, "var_weight": 0.7, "gamma": 1.0,
           "cov_divide_by": "d2"}
    z = _np_head(_np_params(head), slots.reshape(20, 6).numpy())
    expected = 0.125 + 0.3 * _np_cov(z, 25) + 0.7 * _np_var(z, 1.0)
    total = weighted_total(recon, regulariser_terms(slots, head, reg), reg)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    vic = {**PAPER_CELLS["coco/dinosaur_covloss"]["reg"], "cov_weight": 0.3, "var_weight": 0.7}
    ident = ProjectionHead(6, None)
    s = slots.reshape(20, 6).numpy()
    assert weighted_total(recon, regulariser_terms(slots, ident, vic), vic).item() == pytest.approx(
        0.125 + 0.3 * _np_cov(s, 6) + 0.7 * _np_var(s, 1.0), rel=1e-5)
    for cell in ("cmdsprites/cosineloss", "coco/cosineloss"):
        cos = PAPER_CELLS[cell]["reg"]
        got = weighted_total(recon, regulariser_terms(slots, ident, cos), cos).item()
        assert got == pytest.approx(0.125 + 0.01 * _np_cos(slots.numpy()), rel=1e-6)
    cov = PAPER_CELLS["cmdsprites/covloss"]["reg"]  # cov weight 1, variance off
    head = _real_head(dims=(12, 5))
    z = _np_head(_np_params(head), s)
    assert weighted_total(recon, regulariser_terms(slots, head, cov), cov).item() == pytest.approx(
        0.125 + 1.0 * _np_cov(z, 25), rel=1e-5)


def test_the_ablation_cells_regularisers():
    """covloss_var: COVLOSS plus the variance term (weight 1, gamma 1, eps 1e-4) on the same projections;
    cosineloss_proj: the cosine loss on the projection head's outputs, not on raw slots; gradients reach the head."""
    from slotcov.train.losses import weighted_total
    slots = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    recon = torch.tensor(0.125, dtype=torch.float64)
    var = {**PAPER_CELLS["cmdsprites/covloss_var"]["reg"], "projection": [12, 5]}
    assert {k: var[k] for k in ("method", "cov_weight", "var_weight", "gamma", "eps", "cov_divide_by")} == {
        "method": "covloss", "cov_weight": 1.0, "var_weight": 1.0, "gamma": 1.0, "eps": 1e-4, "cov_divide_by": "d2"}
    head = _real_head(dims=(12, 5))
    z = _np_head(_np_params(head), slots.reshape(20, 6).numpy())
    terms = regulariser_terms(slots, head, var)
    assert set(terms) == {"cov", "var"}
    assert weighted_total(recon, terms, var).item() == pytest.approx(0.125 + _np_cov(z, 25) + _np_var(z, 1.0), rel=1e-5)

    proj = {**PAPER_CELLS["cmdsprites/cosineloss_proj"]["reg"], "projection": [12, 5]}
    assert PAPER_CELLS["cmdsprites/cosineloss_proj"]["reg"]["projection"] == [1024, 1024, 1024]
    assert {k: proj[k] for k in ("method", "cosine_weight", "cosine_margin", "cosine_warmup")} == {
        "method": "cosineloss", "cosine_weight": 0.01, "cosine_margin": 0.2, "cosine_warmup": 0}
    projected = _np_head(_np_params(head), slots.numpy())  # [4, 5, 5]: per image, its slots' projections
    terms = regulariser_terms(slots, head, proj)
    assert set(terms) == {"cos"}
    assert terms["cos"].item() == pytest.approx(_np_cos(projected), rel=1e-6)
    assert terms["cos"].item() != pytest.approx(_np_cos(slots.numpy()), rel=1e-3)  # not the raw slots' loss
    weighted_total(recon, terms, proj).backward()
    assert head.net[0].weight.grad is not None and head.net[0].weight.grad.abs().sum() > 0


def test_cosine_warmup_ramps_the_cosine_weight_linearly():
    """reg.cosine_warmup: weight * min(1, (step + 1) / warmup), steps counted from 0; 0 = no ramp (the paper)."""
    from slotcov.train.losses import term_weights, weighted_total
    reg = {**REG, "method": "cosineloss", "cosine_weight": 0.01, "cosine_warmup": 100}
    assert term_weights(reg, 0)["cos"] == pytest.approx(0.01 * 1 / 100)
    assert term_weights(reg, 49)["cos"] == pytest.approx(0.01 * 0.5)
    assert term_weights(reg, 99)["cos"] == pytest.approx(0.01)
    assert term_weights(reg, 5000)["cos"] == pytest.approx(0.01)
    assert term_weights({**reg, "cosine_warmup": 0}, 0)["cos"] == 0.01
    terms = {"cos": torch.tensor(2.0)}
    assert weighted_total(torch.tensor(1.0), terms, reg, step=24).item() == pytest.approx(1.0 + 2.0 * 0.01 * 0.25)


@pytest.mark.parametrize("cell,reg,weights", [
    ("cmdsprites/covloss", {"projection": [24, 16], "cov_weight": 0.3, "var_weight": 0.7, "gamma": 1.0},
     {"cov": 0.3, "var": 0.7}),
    ("cmdsprites/cosineloss", {}, {"cos": 0.01}),
    ("cmdsprites/cosineloss", {"cosine_warmup": 4}, {"cos": 0.01}),
    ("cmdsprites/covloss_var", {"projection": [24, 16]}, {"cov": 1.0, "var": 1.0}),
    ("cmdsprites/cosineloss_proj", {"projection": [24, 16]}, {"cos": 0.01}),
])
def test_training_loss_is_recon_plus_each_term_times_its_weight(tmp_path, cell, reg, weights):
    """The loss the trainer optimises (its log.csv) equals recon + sum of weight * term, every step."""
    import csv

    from slotcov.config import deep_merge
    from slotcov.train.loop import train
    from tiny_run import tiny_cell, tiny_dataset
    cfg = deep_merge(tiny_cell(cell, steps=6), {"reg": reg})
    train(cfg, tiny_dataset(), tmp_path, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 6
    ramp = reg.get("cosine_warmup", 0)
    for row in rows:
        step = int(row["step"])  # = the 0-based update index + 1
        expected = float(row["recon"])
        for name, w in weights.items():
            w = w * min(1.0, step / ramp) if (name == "cos" and ramp) else w
            expected += w * float(row[name])
        assert float(row["loss"]) == pytest.approx(expected, rel=2e-5, abs=1e-7), row


def test_an_unknown_term_is_an_error_not_dropped(tmp_path, monkeypatch):
    """A term outside losses.TERMS would be neither weighted, logged nor checked for non-finite values: the
    update stops with its name. The log's columns are TERMS, in TERMS order."""
    import slotcov.train.losses as L
    import slotcov.train.step as S
    from slotcov.train.loop import LOG_COLUMNS, train
    from tiny_run import tiny_cell, tiny_dataset

    assert LOG_COLUMNS[4:-2] == list(L.TERMS)
    assert L.term_names({"cos": 1, "cov": 2}) == ["cov", "cos"]
    real = L.regulariser_terms
    monkeypatch.setattr(S, "regulariser_terms", lambda *a: {**real(*a), "ortho": torch.tensor(float("nan"))})
    with pytest.raises(ValueError, match="'ortho'.*TERMS"):
        train(tiny_cell("cmdsprites/covloss", steps=2), tiny_dataset(), tmp_path, progress=False)
