"""The baseline the benchmarks compare against: the authors' models as a straightforward
eager fp32 PyTorch reimplementation (the style of their scratchpad and of most public Slot
Attention code): no mixed precision, default memory format, no compilation, a
host-device sync per step for logging, a fresh DataLoader-style batch copy per step.

Kept independent of slotcov.models on purpose, so that the ratio measures the project's
trainer against what a researcher would write, for the same architecture and config.
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

    def __init__(self, res=64, k=5, d=64):
        super().__init__()
        self.res, self.k = res, k
        self.enc = nn.Sequential(nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(),
                                 nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), nn.Conv2d(64, 64, 5, padding=2), nn.ReLU())
        self.enc_pos, self.dec_pos = nn.Linear(4, 64), nn.Linear(4, d)
        self.norm = nn.LayerNorm(64)
        self.mlp = nn.Sequential(nn.Linear(64, d), nn.ReLU(), nn.Linear(d, d))
        self.sa = SlotAttention(k, d, max(d, 128))
        self.dec = nn.Sequential(nn.ConvTranspose2d(d, 64, 5, padding=2), nn.ReLU(),
                                 nn.ConvTranspose2d(64, 64, 5, padding=2), nn.ReLU(),
                                 nn.ConvTranspose2d(64, 64, 5, padding=2), nn.ReLU(),
                                 nn.ConvTranspose2d(64, 4, 3, padding=1))

    def forward(self, image):
        b = image.shape[0]
        g = grid(self.res, self.res, image.device)
        x = self.enc(image).permute(0, 2, 3, 1) + self.enc_pos(g)
        slots = self.sa(self.mlp(self.norm(x.reshape(b, -1, 64))))
        z = slots.reshape(b * self.k, 1, 1, -1).repeat(1, self.res, self.res, 1) + self.dec_pos(g)
        out = self.dec(z.permute(0, 3, 1, 2)).reshape(b, self.k, 4, self.res, self.res)
        rgb, alpha = out[:, :, :3], out[:, :, 3:].softmax(dim=1)
        return (rgb * alpha).sum(1), slots


class DinosaurModel(nn.Module):
    """DINOSAUR: token MLP encoder, Slot Attention, per-token MLP decoder reconstructing the tokens."""

    def __init__(self, n_tokens=196, feat=768, k=7, d=256, hidden=(3072,)):
        super().__init__()
        self.k = k
        self.enc = nn.Sequential(nn.LayerNorm(feat), nn.Linear(feat, d), nn.ReLU(), nn.LayerNorm(d),
                                 nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.sa = SlotAttention(k, d, 4 * d)
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
