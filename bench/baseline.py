"""The baseline the benchmarks compare against: the authors' models as a straightforward
eager fp32 PyTorch reimplementation (the style of their scratchpad and of most public Slot
Attention code): no mixed precision, default memory format, no compilation, a
host-device sync per step for logging, a fresh DataLoader-style batch copy per step.

Kept independent of slotcov.train.models on purpose, so that the ratio measures the project's
trainer against what a researcher would write, for the same architecture and config
(every LayerNorm with eps 1e-3, as in slotcov.train.models). `from_slotcov` builds the baseline
of a slotcov model with the same weights: the equivalence test (tests/test_equivalence.py)
checks that one step, and 50, of both trainers give the same numbers.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def grid(h, w, device):
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h, device=device), torch.linspace(0, 1, w, device=device),
                            indexing="ij")
    return torch.stack([ys, xs, 1 - ys, 1 - xs], -1)


class SlotAttention(nn.Module):
    def __init__(self, k, d, hidden, iters=3):
        super().__init__()
        self.k, self.iters, self.scale = k, iters, d ** -0.5
        self.mu = nn.Parameter(torch.randn(1, 1, d) * 0.1)
        self.log_sigma = nn.Parameter(torch.zeros(1, 1, d))
        self.q, self.kk, self.v = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.gru = nn.GRUCell(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d))
        self.n_in, self.n_s, self.n_m = nn.LayerNorm(d, eps=1e-3), nn.LayerNorm(d, eps=1e-3), nn.LayerNorm(d, eps=1e-3)

    def forward(self, x):
        b, n, d = x.shape
        slots = self.mu + self.log_sigma.exp() * torch.randn(b, self.k, d, device=x.device)
        x = self.n_in(x)
        k, v = self.kk(x), self.v(x)
        for _ in range(self.iters):
            prev = slots
            q = self.q(self.n_s(slots))
            attn = (torch.bmm(q, k.transpose(1, 2)) * self.scale).softmax(dim=1) + 1e-8
            attn = attn / attn.sum(-1, keepdim=True)
            slots = self.gru(torch.bmm(attn, v).reshape(-1, d), prev.reshape(-1, d)).reshape(b, -1, d)
            slots = slots + self.mlp(self.n_m(slots))
        return slots


class CNNModel(nn.Module):
    """SA / ColoredMDSprites: CNN encoder, Slot Attention, full-resolution broadcast decoder."""

    def __init__(self, res=64, k=5, d=64, c=64, hidden=128):
        super().__init__()
        self.res, self.k, self.c = res, k, c
        self.enc = nn.Sequential(nn.Conv2d(3, c, 5, padding=2), nn.ReLU(), nn.Conv2d(c, c, 5, padding=2), nn.ReLU(),
                                 nn.Conv2d(c, c, 5, padding=2), nn.ReLU(), nn.Conv2d(c, c, 5, padding=2), nn.ReLU())
        self.enc_pos, self.dec_pos = nn.Linear(4, c), nn.Linear(4, d)
        self.norm = nn.LayerNorm(c, eps=1e-3)
        self.mlp = nn.Sequential(nn.Linear(c, d), nn.ReLU(), nn.Linear(d, d))
        self.sa = SlotAttention(k, d, hidden)
        self.dec = nn.Sequential(nn.ConvTranspose2d(d, c, 5, padding=2), nn.ReLU(),
                                 nn.ConvTranspose2d(c, c, 5, padding=2), nn.ReLU(),
                                 nn.ConvTranspose2d(c, c, 5, padding=2), nn.ReLU(),
                                 nn.ConvTranspose2d(c, 4, 3, padding=1))

    def forward(self, image):
        b = image.shape[0]
        g = grid(self.res, self.res, image.device)
        x = self.enc(image).permute(0, 2, 3, 1) + self.enc_pos(g)
        slots = self.sa(self.mlp(self.norm(x.reshape(b, -1, self.c))))
        z = slots.reshape(b * self.k, 1, 1, -1).repeat(1, self.res, self.res, 1) + self.dec_pos(g)
        out = self.dec(z.permute(0, 3, 1, 2)).reshape(b, self.k, 4, self.res, self.res)
        rgb, alpha = out[:, :, :3], out[:, :, 3:].softmax(dim=1)
        return (rgb * alpha).sum(1), slots


class DinosaurModel(nn.Module):
    """DINOSAUR: token MLP encoder, Slot Attention, per-token MLP decoder reconstructing the tokens."""

    def __init__(self, n_tokens=196, feat=768, k=7, d=256, hidden=(3072,), sa_hidden=None):
        super().__init__()
        self.k = k
        self.enc = nn.Sequential(nn.LayerNorm(feat, eps=1e-3), nn.Linear(feat, d), nn.ReLU(), nn.LayerNorm(d, eps=1e-3),
                                 nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.sa = SlotAttention(k, d, sa_hidden or 4 * d)
        self.pos = nn.Parameter(torch.randn(1, n_tokens, d) * 0.02)
        dims = [d, *hidden, feat + 1]
        layers = []
        for i in range(len(dims) - 1):
            layers += [nn.Linear(dims[i], dims[i + 1]), nn.ReLU()]
        self.dec = nn.Sequential(*layers[:-1])

    def forward(self, tokens):
        b, n, f = tokens.shape
        slots = self.sa(self.enc(tokens))
        z = slots.reshape(b * self.k, 1, -1) + self.pos
        out = self.dec(z).reshape(b, self.k, n, f + 1)
        feats, alpha = out[..., :f], out[..., f:].softmax(dim=1)
        return (feats * alpha).sum(1), slots


def train_steps(model, batches, steps, device, lr=4e-4, clip=None):
    """A plain training loop: fp32, eager, a .item() per step for the progress print."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for i in range(steps):
        x = batches[i % len(batches)].to(device)
        recon, _ = model(x)
        loss = F.mse_loss(recon, x)
        opt.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
    return losses


# slotcov.train.models parameter names -> the names above (prefix renames, first match wins)
_RENAMES = {
    "sa_cnn": [("encoder.convs.", "enc."), ("encoder.pos.proj.", "enc_pos."), ("encoder.norm.", "norm."),
               ("encoder.mlp.", "mlp."), ("decoder.pos.proj.", "dec_pos."), ("decoder.convs.", "dec.")],
    "dinosaur": [("encoder.proj.0.", "enc.0."), ("encoder.proj.1.", "enc.1."), ("encoder.norm.", "enc.3."),
                 ("encoder.mlp.0.", "enc.4."), ("encoder.mlp.2.", "enc.6."), ("decoder.mlp.", "dec."),
                 ("decoder.pos", "pos")],
}
_SA_RENAMES = [("slot_attention.slots_mu", "sa.mu"), ("slot_attention.slots_log_sigma", "sa.log_sigma"),
               ("slot_attention.to_q.", "sa.q."), ("slot_attention.to_k.", "sa.kk."), ("slot_attention.to_v.", "sa.v."),
               ("slot_attention.norm_inputs.", "sa.n_in."), ("slot_attention.norm_slots.", "sa.n_s."),
               ("slot_attention.norm_mlp.", "sa.n_m."), ("slot_attention.", "sa.")]


def rename(kind: str, name: str) -> str:
    """The baseline's name of slotcov.train.models parameter `name` in a model of `kind`."""
    return next(name.replace(a, b, 1) for a, b in _RENAMES[kind] + _SA_RENAMES + [("", "")] if name.startswith(a))


def from_slotcov(model_cfg: dict, state: dict) -> nn.Module:
    """The baseline model of a slotcov `model` config, holding the weights of a slotcov state_dict."""
    c = model_cfg
    if c["kind"] == "sa_cnn":
        model = CNNModel(c["resolution"], c["num_slots"], c["slot_dim"], c.get("channels", 64), c["mlp_hidden"])
    elif c["kind"] == "dinosaur":
        model = DinosaurModel(c["num_tokens"], c["feature_dim"], c["num_slots"], c["slot_dim"],
                              tuple(c["decoder_hidden"]), c["mlp_hidden"])
    else:
        raise ValueError(f"no baseline for model kind {c['kind']!r}")
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    renamed = {rename(c["kind"], k): v for k, v in state.items()}
    model.load_state_dict({k: v.reshape(shapes[k]) for k, v in renamed.items()})  # strict: all mapped, none left
    return model
