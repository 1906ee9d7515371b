"""The model family: the authors' parameter counts, output shapes and mask normalisation."""
import pytest
import torch

from slotcov.cells import PAPER_CELLS
from slotcov.train.models import build_cell
from slotcov.config import deep_merge
from slotcov.train.models import SlotAttention, count_parameters

AUTHORS_COUNTS = {  # trainable parameters (model, projection head) of the authors' models
    "cmdsprites/sa": (685_380, 0),
    "cmdsprites/covloss": (685_380, 2_169_856),
    "cmdsprites/cosineloss": (685_380, 0),
    "cmdsprites/covloss_var": (685_380, 2_169_856),  # the ablations: COVLOSS's head (with --proj-layernorm)
    "cmdsprites/cosineloss_proj": (685_380, 2_169_856),
    "coco/sa": (263_876, 0),
    "coco/covloss": (263_876, 2_169_856),
    "coco/cosineloss": (550_404, 0),
    # Table 3: encoder + Slot Attention + 3x3072 MLP decoder, identity projection
    "coco/dinosaur": (23_532_801, 0),
    "coco/dinosaur_covloss": (23_532_801, 0),
    "coco/dinosaur1024": (45_328_641, 0),
    "coco/dinosaur1024_covloss": (45_328_641, 0),
}


@pytest.mark.parametrize("cell", AUTHORS_COUNTS)
def test_parameter_counts_match_the_authors(cell):
    model, head = build_cell(PAPER_CELLS[cell])
    assert (count_parameters(model), count_parameters(head)) == AUTHORS_COUNTS[cell]
    assert count_parameters(model) + count_parameters(head) == sum(AUTHORS_COUNTS[cell])


def test_dinosaur_paper_decoder_has_three_hidden_layers_of_3072():
    model, _ = build_cell(PAPER_CELLS["coco/dinosaur"])
    layers = list(model.decoder.mlp)
    assert [type(m).__name__ for m in layers] == ["Linear", "ReLU"] * 3 + ["Linear"]
    assert [m.out_features for m in layers if isinstance(m, torch.nn.Linear)] == [3072, 3072, 3072, 769]


def test_dinosaur_decoder_options():
    small = deep_merge(PAPER_CELLS["coco/dinosaur"], {"model": {"decoder_hidden": [2048, 2048, 2048]}})
    model, _ = build_cell(small)
    linears = [m for m in model.decoder.mlp if isinstance(m, torch.nn.Linear)]
    assert [lin.out_features for lin in linears] == [2048, 2048, 2048, 769]
    assert PAPER_CELLS["coco/dinosaur1024"]["model"]["slot_dim"] == 1024


def _tiny(cell):
    over = {"cmdsprites": {"model": {"resolution": 16}},
            "coco": {"model": {"feature_dim": 24, "num_tokens": 16, "broadcast": 2, "upsample": 3,
                               "target_resolution": 16, "decoder_hidden": [32]}}}[cell.split("/")[0]]
    return deep_merge(PAPER_CELLS[cell], over)


@pytest.mark.parametrize("cell", list(PAPER_CELLS))
def test_forward_shapes_and_masks(cell):
    torch.manual_seed(0)
    cfg = _tiny(cell)
    model, head = build_cell(cfg)
    k, d = cfg["model"]["num_slots"], cfg["model"]["slot_dim"]
    batch = {"image": torch.rand(2, 3, 16, 16), "features": torch.randn(2, 16, 24)}
    out = model(batch)
    assert out["slots"].shape == (2, k, d)
    assert out["recon"].shape == out["target"].shape
    if cfg["model"]["kind"] == "dinosaur":
        assert out["masks"].shape == (2, k, 16)
    else:
        assert out["recon"].shape == (2, 3, 16, 16)
        assert out["masks"].shape == (2, k, 16, 16)
    torch.testing.assert_close(out["masks"].sum(dim=1), torch.ones_like(out["masks"][:, 0]))
    assert head(out["slots"]).shape[-1] == (cfg["reg"]["projection"] or [d])[-1]


def test_slot_attention_normalises_over_inputs_after_softmax_over_slots():
    torch.manual_seed(0)
    sa = SlotAttention(num_slots=4, dim=8, iters=1, mlp_hidden=16)
    slots, attn = sa(torch.randn(3, 10, 8))
    assert slots.shape == (3, 4, 8) and attn.shape == (3, 4, 10)
    # attn is the softmax over slots (+eps) of the last iteration: columns sum to 1 + K*eps
    torch.testing.assert_close(attn.sum(dim=1), torch.full((3, 10), 1 + 4e-8), rtol=0, atol=1e-6)


def test_attn_sharpness_scales_the_logits():
    """sharpness s gives the attention of logits q.k * s / sqrt(D); 1 (the paper's) is the default."""
    from slotcov.train.models import build_model
    torch.manual_seed(0)
    sa = SlotAttention(num_slots=4, dim=8, iters=1, mlp_hidden=16, sharpness=5.0)
    x = torch.randn(2, 10, 8)
    torch.manual_seed(1)
    _, attn = sa(x)
    torch.manual_seed(1)
    slots0 = sa.slots_mu + sa.slots_log_sigma.exp() * torch.randn(2, 4, 8)
    xn = sa.norm_inputs(x)
    logits = torch.einsum("bkd,bnd->bkn", sa.to_q(sa.norm_slots(slots0)), sa.to_k(xn)) * 5.0 / 8 ** 0.5
    torch.testing.assert_close(attn, torch.softmax(logits, dim=1) + sa.eps)
    cfg = dict(PAPER_CELLS["cmdsprites/sa"]["model"], resolution=16)
    assert build_model(cfg).slot_attention.scale == 64 ** -0.5
    assert build_model(dict(cfg, attn_sharpness=20.0)).slot_attention.scale == 20.0 * 64 ** -0.5


def test_model_summary_cli(capsys):
    from slotcov.cli import main

    assert main(["model-summary"]) == 0
    listing = capsys.readouterr().out
    assert "2,855,236" in listing and "550,404" in listing
    assert listing.count("23,532,801") == 2 * 2 and listing.count("45,328,641") == 2 * 2  # model and total
    assert main(["model-summary", "coco/covloss"]) == 0
    assert "2,433,732" in capsys.readouterr().out
    assert main(["model-summary", "nope/nope"]) == 2


def test_broadcast_decoder_shortcut_equals_the_plain_broadcast():
    """The first ConvT computed by linearity equals the convolution of the tiled slots."""
    torch.manual_seed(0)
    model, _ = build_cell(deep_merge(PAPER_CELLS["cmdsprites/sa"], {"model": {"resolution": 12}}))
    dec = model.decoder
    slots = torch.randn(14, 5, 64, dtype=torch.float64)  # 70 slot maps > 64 + 1: the shortcut is taken
    dec.double()
    rgb, alpha = dec(slots)
    x = dec.pos(slots.reshape(70, 1, 1, 64).expand(-1, 12, 12, -1)).permute(0, 3, 1, 2)
    plain = dec.convs(x).reshape(14, 5, 4, 12, 12)
    torch.testing.assert_close(rgb, plain[:, :, :3], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(alpha, plain[:, :, 3:], rtol=1e-10, atol=1e-10)


def test_kernel_options_set_the_convolution_sizes():
    cfg = dict(PAPER_CELLS["cmdsprites/sa"]["model"], resolution=16)
    model, _ = build_cell({"model": cfg, "reg": PAPER_CELLS["cmdsprites/sa"]["reg"]})
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [c.kernel_size for c in convs] == [(5, 5)] * 4 + [(5, 5)] * 3 + [(3, 3)]  # the paper's
    small = dict(cfg, encoder_kernel=1, encoder_layers=2, decoder_kernel=1)
    model, _ = build_cell({"model": small, "reg": PAPER_CELLS["cmdsprites/sa"]["reg"]})
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [c.kernel_size for c in convs] == [(1, 1)] * 2 + [(1, 1)] * 3 + [(3, 3)]
    out = model({"image": torch.rand(2, 3, 16, 16)})
    assert out["recon"].shape == (2, 3, 16, 16)


@pytest.mark.parametrize("cell", ["cmdsprites/sa", "coco/dinosaur"])
def test_attention_mask_prior_multiplies_the_decoder_masks_by_the_attention(cell):
    """mask_prior: attention gives masks = softmax_k(alpha_k + log attn_k), i.e. attn * exp(alpha), renormalised."""
    cfg = _tiny(cell)
    torch.manual_seed(0)
    plain, _ = build_cell(cfg)
    prior, _ = build_cell(deep_merge(cfg, {"model": {"mask_prior": "attention"}}))
    prior.load_state_dict(plain.state_dict())
    batch = {"image": torch.rand(2, 3, 16, 16), "features": torch.randn(2, 16, 24)}
    torch.manual_seed(1)
    a = plain(batch)
    torch.manual_seed(1)
    b = prior(batch)
    k = cfg["model"]["num_slots"]
    alpha = a["masks"].reshape(2, k, -1)
    expected = alpha * b["attn"] / (alpha * b["attn"]).sum(dim=1, keepdim=True)
    torch.testing.assert_close(b["masks"].reshape(2, k, -1), expected)
    torch.testing.assert_close(b["attn"], a["attn"])
    assert b["recon"].shape == a["recon"].shape


def test_attention_mask_prior_is_refused_for_the_coco_slot_attention_cells():
    from slotcov.config import check_cell
    from slotcov.errors import UserError
    cfg = deep_merge(PAPER_CELLS["coco/sa"], {"model": {"mask_prior": "attention"}})
    with pytest.raises(UserError, match="mask_prior: attention"):
        check_cell(cfg, "coco/sa")


@pytest.mark.parametrize("cell", ["coco/sa", "coco/covloss", "coco/cosineloss"])
def test_coco_broadcast_decoder_mlp_ends_in_a_linear_that_feeds_the_first_convt(cell):
    """The authors' per-position MLP is Linear-ReLU-Linear-ReLU-Linear, then straight into a ConvT."""
    model, _ = build_cell(PAPER_CELLS[cell])
    layers = list(model.decoder.mlp)
    assert [type(m).__name__ for m in layers] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert isinstance(layers[-1], torch.nn.Linear)
    assert isinstance(model.decoder.convs[0], torch.nn.ConvTranspose2d)


def test_every_paper_cell_uses_the_authors_slot_initialisation_and_fp32():
    from slotcov.cells import non_paper_settings
    for name, cell in PAPER_CELLS.items():
        assert cell["model"]["slot_init"] == "authors" and cell["train"]["amp"] == "fp32", name
        assert non_paper_settings(cell, name) == [], name
    bf16 = deep_merge(PAPER_CELLS["coco/sa"], {"train": {"amp": "bf16"}, "model": {"slot_init": "glorot"}})
    assert non_paper_settings(bf16, "coco/sa") == ["model.slot_init=glorot", "train.amp=bf16"]


@pytest.mark.parametrize("init", ["authors", "glorot"])
def test_slot_initialisation_statistics(init):
    """authors: mu ~ N(0,1), log_sigma ~ U[0,1); glorot: both U(+-sqrt(6/(1+D))) (TensorFlow fans)."""
    torch.manual_seed(0)
    d = 4096
    sa = SlotAttention(num_slots=4, dim=d, iters=1, mlp_hidden=16, init=init)
    mu, log_sigma = sa.slots_mu.detach().flatten(), sa.slots_log_sigma.detach().flatten()
    assert sa.slots_mu.shape == sa.slots_log_sigma.shape == (1, 1, d)
    if init == "authors":
        assert abs(mu.mean().item()) < 0.05 and abs(mu.std().item() - 1.0) < 0.05
        assert mu.min() < -2.5 and mu.max() > 2.5  # Gaussian tails, not a bounded uniform
        assert log_sigma.min() >= 0.0 and log_sigma.max() < 1.0
        assert abs(log_sigma.mean().item() - 0.5) < 0.02 and abs(log_sigma.std().item() - 12 ** -0.5) < 0.02
    else:
        bound = (6 / (1 + d)) ** 0.5
        for p in (mu, log_sigma):
            assert p.abs().max() <= bound and p.abs().max() > 0.9 * bound
            assert abs(p.mean().item()) < 0.05 * bound and abs(p.std().item() - bound / 3 ** 0.5) < 0.05 * bound
    model = build_cell(deep_merge(_tiny("cmdsprites/sa"), {"model": {"slot_init": init}}))[0]
    log_sigma = model.slot_attention.slots_log_sigma.detach()
    assert (log_sigma.min() >= 0) == (init == "authors")  # the knob reaches the built model


# The authors' command lines (their README; flags not given keep train.py's defaults), as literals.
AUTHORS_RUNS = {
    "cmdsprites/sa": {"num_slots": 5, "slot_dim": 64, "warmup_steps": 10_000, "grad_clip": None, "method": "none"},
    "cmdsprites/covloss": {"num_slots": 5, "slot_dim": 64, "warmup_steps": 10_000, "grad_clip": None,
                           "method": "covloss", "projection": [1024, 1024, 1024], "cov_weight": 1.0,
                           "var_weight": 0.0, "gamma": 0.0, "cov_divide_by": "d2"},
    "cmdsprites/cosineloss": {"num_slots": 5, "slot_dim": 64, "warmup_steps": 10_000, "grad_clip": None,
                              "method": "cosineloss", "projection": None, "cosine_weight": 0.01,
                              "cosine_warmup": 0},
    "coco/covloss": {"num_slots": 7, "slot_dim": 64, "mlp_hidden": 256, "warmup_steps": 10_000, "grad_clip": 1.0,
                     "method": "covloss", "projection": [1024, 1024, 1024], "cov_weight": 1.0, "var_weight": 0.0,
                     "cov_divide_by": "d2", "decoder_mlp": [32, 32, 32], "decoder_channels": 32},
    "coco/cosineloss": {"num_slots": 7, "slot_dim": 128, "mlp_hidden": 512, "warmup_steps": 10_000,
                        "grad_clip": 1.0, "method": "cosineloss", "cosine_weight": 0.01, "cosine_warmup": 0},
    "coco/dinosaur": {"num_slots": 7, "slot_dim": 256, "mlp_hidden": 1024, "decoder_hidden": [3072] * 3,
                      "grad_clip": 1.0, "method": "none"},
    "coco/dinosaur_covloss": {"slot_dim": 256, "decoder_hidden": [3072] * 3, "method": "vicreg", "projection": None,
                              "cov_weight": 1.0, "var_weight": 1.0, "gamma": 1.0, "cov_divide_by": "d"},
    "coco/dinosaur1024": {"slot_dim": 1024, "mlp_hidden": 4096, "decoder_hidden": [3072] * 3, "method": "none"},
    "coco/dinosaur1024_covloss": {"slot_dim": 1024, "mlp_hidden": 4096, "decoder_hidden": [3072] * 3,
                                  "method": "vicreg", "cov_weight": 1.0, "var_weight": 1.0, "gamma": 1.0,
                                  "cov_divide_by": "d"},
}


@pytest.mark.parametrize("cell", AUTHORS_RUNS)
def test_resolved_paper_cells_equal_the_authors_runs(cell):
    from pathlib import Path

    from slotcov import config as C
    paper = C.load(Path(__file__).resolve().parents[1] / "config" / "paper.yaml")
    cfg = C.resolve_cell(paper, cell)
    assert cfg == PAPER_CELLS[cell]  # the paper preset overrides nothing
    flat = {**cfg["model"], **cfg["reg"], **cfg["train"]}
    for key, value in AUTHORS_RUNS[cell].items():
        assert flat.get(key, 0) == value, key
    assert (flat["lr"], flat["batch_size"], flat["steps"], flat["decay_rate"], flat["decay_steps"]) == (
        4e-4, 64, 500_000, 0.5, 100_000)
    assert (flat["iters"], flat["slot_init"], flat["amp"]) == (3, "authors", "fp32")
