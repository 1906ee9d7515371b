"""Each regulariser against a straightforward loop formula."""
import itertools

import numpy as np
import pytest
import torch

from slotcov.losses import ProjectionHead, cosine_loss, covariance_loss, regulariser_terms, variance_loss


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
    assert regulariser_terms(slots, ident, {"method": "none"}) == {}
    cov = regulariser_terms(slots, ident, {"method": "covloss", "cov_divide_by": "d2"})
    assert set(cov) == {"cov"}
    assert cov["cov"].item() == pytest.approx(covariance_loss(slots.reshape(20, 8)).item())
    vic = regulariser_terms(slots, ident, {"method": "vicreg", "gamma": 1.0, "cov_divide_by": "d"})
    assert set(vic) == {"cov", "var"}
    assert set(regulariser_terms(slots, ident, {"method": "cosineloss"})) == {"cos"}
    with pytest.raises(ValueError):
        regulariser_terms(slots, ident, {"method": "bogus"})
