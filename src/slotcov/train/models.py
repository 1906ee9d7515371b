"""The model family of the paper, readable top to bottom.

- SlotAttention: the module of Locatello et al. (2020).
- SlotAutoencoder: an encoder (CNN on pixels, or a head on frozen ViT tokens), Slot
  Attention, and a decoder (spatial broadcast to pixels, or DINOSAUR's per-token MLP).
  Every model returns the reconstruction, per-slot alpha masks (softmax over slots) and
  the slots.

`build_model(cfg["model"])` builds any table cell from its plain config mapping.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from slotcov.cells import PAPER_CELLS
from slotcov.errors import UserError
from slotcov.train.losses import ProjectionHead

LN_EPS = 1e-3  # the Slot Attention reference uses 1e-3 in every LayerNorm


def build_grid(h: int, w: int, device=None) -> torch.Tensor:
    """The 4-channel position grid [h, w, 4] = (y, x, 1-y, 1-x) on [0, 1]."""
    ys = torch.linspace(0.0, 1.0, h, device=device)
    xs = torch.linspace(0.0, 1.0, w, device=device)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([y, x, 1.0 - y, 1.0 - x], dim=-1)


class SoftPositionEmbed(nn.Module):
    """Adds Linear(4 -> dim) of the position grid to a channels-last feature map."""

    def __init__(self, dim: int, resolution: tuple[int, int]):
        super().__init__()
        self.proj = nn.Linear(4, dim)
        self.register_buffer("grid", build_grid(*resolution), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, H, W, C]
        return x + self.proj(self.grid)


def mlp(dims: list[int], final_act: bool = False) -> nn.Sequential:
    """Linear layers with ReLU between them (and after the last if final_act)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2 or final_act:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def init_slot_distribution(mu: nn.Parameter, log_sigma: nn.Parameter, init: str) -> None:
    """Initialise the slot distribution's mean and log-std in place.

    authors: mu ~ N(0, 1), log_sigma ~ U[0, 1) per dimension (the paper's runs);
    glorot: both Glorot-uniform as the Google (TensorFlow) reference initialises a [1, 1, D] weight:
    fans 1 and D, i.e. U(-sqrt(6 / (1 + D)), +sqrt(6 / (1 + D))).
    """
    with torch.no_grad():
        if init == "authors":
            mu.normal_(0.0, 1.0)
            log_sigma.uniform_(0.0, 1.0)
        elif init == "glorot":
            nn.init.xavier_uniform_(mu.view(1, -1))  # a [1, D] view has TensorFlow's fans (1, D)
            nn.init.xavier_uniform_(log_sigma.view(1, -1))
        else:
            raise ValueError(f"unknown slot_init {init!r}; choose authors or glorot")


class SlotAttention(nn.Module):
    """Iterative attention in which slots compete for the inputs (Locatello et al. 2020)."""

    def __init__(self, num_slots: int, dim: int, iters: int = 3, mlp_hidden: int = 128,
                 eps: float = 1e-8, sharpness: float = 1.0, init: str = "authors"):
        super().__init__()
        self.num_slots, self.dim, self.iters, self.eps = num_slots, dim, iters, eps
        self.scale = sharpness * dim ** -0.5  # sharpness 1 = the paper; > 1 makes slots compete harder
        self.slots_mu = nn.Parameter(torch.empty(1, 1, dim))
        self.slots_log_sigma = nn.Parameter(torch.empty(1, 1, dim))
        init_slot_distribution(self.slots_mu, self.slots_log_sigma, init)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = mlp([dim, mlp_hidden, dim])
        self.norm_inputs = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm_slots = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm_mlp = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs [B, N, D] -> slots [B, K, D] and attention [B, K, N] of the last iteration."""
        b, _, d = inputs.shape
        noise = torch.randn(b, self.num_slots, d, device=inputs.device, dtype=inputs.dtype)
        slots = self.slots_mu + self.slots_log_sigma.exp() * noise
        inputs = self.norm_inputs(inputs)
        k, v = self.to_k(inputs), self.to_v(inputs)
        for _ in range(self.iters):
            slots_prev = slots
            q = self.to_q(self.norm_slots(slots))
            attn = torch.softmax(torch.einsum("bkd,bnd->bkn", q, k) * self.scale, dim=1)
            attn = attn + self.eps
            updates = torch.einsum("bkn,bnd->bkd", attn / attn.sum(dim=-1, keepdim=True), v)
            slots = self.gru(updates.reshape(-1, d), slots_prev.reshape(-1, d)).reshape(b, -1, d)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attn


class CNNEncoder(nn.Module):
    """4x Conv5x5 + ReLU at full resolution (`kernel` sets the size), soft position embedding, LayerNorm, MLP."""

    def __init__(self, resolution: int, channels: int = 64, out_dim: int = 64, layers: int = 4, kernel: int = 5):
        super().__init__()
        convs: list[nn.Module] = []
        for i in range(layers):
            convs += [nn.Conv2d(3 if i == 0 else channels, channels, kernel, padding=kernel // 2), nn.ReLU()]
        self.convs = nn.Sequential(*convs)
        self.pos = SoftPositionEmbed(channels, (resolution, resolution))
        self.norm = nn.LayerNorm(channels, eps=LN_EPS)
        self.mlp = mlp([channels, out_dim, out_dim])

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, H*W, D]
        x = self.pos(self.convs(image).permute(0, 2, 3, 1))
        return self.mlp(self.norm(x.flatten(1, 2)))


class TokenEncoder(nn.Module):
    """Frozen ViT tokens [B, N, F] -> LayerNorm + Linear(F, D) + ReLU, then LayerNorm + MLP."""

    def __init__(self, feature_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(feature_dim, eps=LN_EPS), nn.Linear(feature_dim, dim), nn.ReLU())
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = mlp([dim, dim, dim])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(self.proj(tokens)))


class BroadcastDecoder(nn.Module):
    """Spatial broadcast decoder: each slot tiled on a grid, + position, MLP, ConvTs -> RGB + alpha.

    The CMDSprites cells broadcast at full resolution with no MLP and 3 stride-1 ConvT5x5;
    the COCO cells broadcast at 8x8, apply an MLP per position, and upsample with 4
    stride-2 ConvT5x5 (8 -> 128) then one stride-1 ConvT5x5.
    """

    def __init__(self, slot_dim: int, broadcast: int, channels: int, mlp_dims: list[int],
                 upsample: int, stride1: int, kernel: int = 5):
        super().__init__()
        self.broadcast = broadcast
        self.pos = SoftPositionEmbed(slot_dim, (broadcast, broadcast))
        # the per-position MLP's last Linear feeds the first ConvT directly (no activation between)
        self.mlp = mlp([slot_dim] + mlp_dims) if mlp_dims else nn.Identity()
        c_in = mlp_dims[-1] if mlp_dims else slot_dim
        layers: list[nn.Module] = []
        for _ in range(upsample):
            layers += [nn.ConvTranspose2d(c_in, channels, 5, stride=2, padding=2, output_padding=1), nn.ReLU()]
            c_in = channels
        for _ in range(stride1):
            layers += [nn.ConvTranspose2d(c_in, channels, kernel, stride=1, padding=kernel // 2), nn.ReLU()]
            c_in = channels
        layers.append(nn.ConvTranspose2d(c_in, 4, 3, stride=1, padding=1))
        self.convs = nn.Sequential(*layers)

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """slots [B, K, D] -> rgb [B, K, 3, H, W] and alpha logits [B, K, 1, H, W]."""
        b, k, d = slots.shape
        if isinstance(self.mlp, nn.Identity) and self.convs[0].stride == (1, 1) and b * k > d + 1:
            x = self._first_layer_by_linearity(slots.reshape(b * k, d))
            out = self.convs[1:](x)
        else:
            x = slots.reshape(b * k, 1, 1, d).expand(-1, self.broadcast, self.broadcast, -1)
            x = self.mlp(self.pos(x)).permute(0, 3, 1, 2)
            out = self.convs(x.contiguous(memory_format=torch.channels_last))
        out = out.reshape(b, k, 4, *out.shape[-2:])
        return out[:, :, :3], out[:, :, 3:]

    def _first_layer_by_linearity(self, slots: torch.Tensor) -> torch.Tensor:
        """The first ConvT of (slot broadcast + position embedding), computed exactly but cheaply.

        The transposed convolution is linear, so its response to slot s tiled over the grid
        is sum_d s_d * R_d, where R_d is its response to the unit vector e_d tiled over the
        grid (border taps included), and the position map's response is shared by all
        slots. That turns a convolution over B*K maps into one over D + 1 maps and a matmul.
        """
        conv = self.convs[0]
        h = w = self.broadcast
        d = slots.shape[-1]
        pos = self.pos.proj(self.pos.grid).permute(2, 0, 1).unsqueeze(0)  # [1, D, H, W]
        units = torch.eye(d, device=slots.device, dtype=pos.dtype).reshape(d, d, 1, 1).expand(d, d, h, w)
        resp = F.conv_transpose2d(torch.cat([units, pos]), conv.weight, None, padding=conv.padding)
        basis, pos_resp = resp[:d], resp[d:] + conv.bias.reshape(1, -1, 1, 1)
        x = torch.einsum("nd,dchw->nhwc", slots.to(basis.dtype), basis) + pos_resp.permute(0, 2, 3, 1)
        return self.convs[1](x.permute(0, 3, 1, 2))  # NCHW view of channels-last memory; then ReLU

class TokenDecoder(nn.Module):
    """DINOSAUR's MLP decoder: each slot + a learned per-token position -> F features + 1 alpha."""

    def __init__(self, slot_dim: int, num_tokens: int, feature_dim: int, hidden: list[int]):
        super().__init__()
        pos = nn.init.xavier_uniform_(torch.empty(num_tokens, slot_dim))  # the authors' init, fans (D, N)
        self.pos = nn.Parameter(pos.reshape(1, 1, num_tokens, slot_dim))
        self.mlp = mlp([slot_dim] + hidden + [feature_dim + 1])

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """slots [B, K, D] -> features [B, K, N, F] and alpha logits [B, K, N, 1]."""
        out = self.mlp(slots.unsqueeze(2) + self.pos)
        return out[..., :-1], out[..., -1:]


class SlotAutoencoder(nn.Module):
    """Encoder -> Slot Attention -> decoder, mixing the per-slot outputs with softmaxed alphas.

    forward(batch) returns a dict: recon (the image [B,3,H,W] or the tokens [B,N,F]),
    masks (alpha masks [B,K,H,W] or [B,K,N], softmax over slots), slots [B,K,D],
    attn [B,K,N_inputs], and target (what recon should match).
    """

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        kind, d, k = cfg["kind"], cfg["slot_dim"], cfg["num_slots"]
        self.slot_attention = SlotAttention(k, d, cfg["iters"], cfg["mlp_hidden"],
                                            sharpness=cfg["attn_sharpness"], init=cfg["slot_init"])
        if kind == "sa_cnn":
            r = cfg["resolution"]
            self.encoder = CNNEncoder(r, cfg["channels"], d, cfg["encoder_layers"], cfg["encoder_kernel"])
            self.decoder = BroadcastDecoder(d, r, cfg["channels"], [], 0, cfg["decoder_layers"],
                                            cfg["decoder_kernel"])
        elif kind == "sa_vit":
            self.encoder = TokenEncoder(cfg["feature_dim"], d)
            self.decoder = BroadcastDecoder(d, cfg["broadcast"], cfg["decoder_channels"], cfg["decoder_mlp"],
                                            cfg["upsample"], 1)
        elif kind == "dinosaur":
            self.encoder = TokenEncoder(cfg["feature_dim"], d)
            self.decoder = TokenDecoder(d, cfg["num_tokens"], cfg["feature_dim"], cfg["decoder_hidden"])
        else:
            raise ValueError(f"unknown model kind {kind!r}")
        if cfg["mask_prior"] == "attention" and kind == "sa_vit":
            raise ValueError("mask_prior: attention needs masks at the attention's resolution (sa_cnn, dinosaur); "
                             "sa_vit decodes 14x14 tokens to 128x128 pixels")

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        kind = self.cfg["kind"]
        inputs = batch["image"] if kind == "sa_cnn" else batch["features"].float()
        slots, attn = self.slot_attention(self.encoder(inputs))
        parts, alpha_logits = self.decoder(slots)
        if self.cfg["mask_prior"] == "attention":
            # masks proportional to attention * exp(alpha): the decoder refines the grouping Slot
            # Attention found instead of rediscovering it (not in the paper; see docs/demo-tuning.md)
            alpha_logits = alpha_logits + attn.log().reshape(alpha_logits.shape).to(alpha_logits.dtype)
        alphas = torch.softmax(alpha_logits, dim=1)
        recon = (parts * alphas).sum(dim=1)
        if kind == "dinosaur":
            return {"recon": recon, "masks": alphas.squeeze(-1), "slots": slots, "attn": attn,
                    "target": batch["features"].float()}
        return {"recon": recon, "masks": alphas.squeeze(2), "slots": slots, "attn": attn,
                "target": batch["image"]}


def build_model(model_cfg: dict) -> SlotAutoencoder:
    """Build the model of a cell's `model` config section."""
    return SlotAutoencoder(model_cfg)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def build_cell(cfg: dict):
    """The trainable modules of a cell: (model, projection head)."""
    _check_complete(cfg)
    model = build_model(cfg["model"])
    head = ProjectionHead(cfg["model"]["slot_dim"], cfg["reg"]["projection"])
    return model, head


def _check_complete(cfg: dict) -> None:
    """One clear error for settings missing a key every cell of this kind has (e.g. an older run's)."""
    paper = next(c for c in PAPER_CELLS.values() if c["model"]["kind"] == cfg["model"]["kind"])
    missing = [f"{section}.{key}" for section in ("model", "reg") for key in paper[section] if key not in cfg[section]]
    if missing:
        raise UserError(f"cell settings lack {', '.join(missing)} (a run saved by an older slotcov, or settings "
                        "not made by slotcov.config.resolve_cell); train it again or add those keys")


def cli_model_summary(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="slotcov model-summary",
                                description="Print a paper cell's layers and trainable parameter count; "
                                            "with no CELL, list every cell with its count.")
    p.add_argument("cell", nargs="?", help=f"one of: {', '.join(PAPER_CELLS)}")
    args = p.parse_args(argv)
    if args.cell is None:
        width = max(map(len, PAPER_CELLS))
        print(f"{'cell':<{width}}  {'model':>10}  {'head':>10}  {'total':>10}")
        for name in PAPER_CELLS:
            model, head = build_cell(PAPER_CELLS[name])
            m, h = count_parameters(model), count_parameters(head)
            print(f"{name:<{width}}  {m:>10,}  {h:>10,}  {m + h:>10,}")
        return 0
    if args.cell not in PAPER_CELLS:
        raise UserError(f"unknown cell {args.cell!r}; choose one of: {', '.join(PAPER_CELLS)}")
    model, head = build_cell(PAPER_CELLS[args.cell])
    print(model)
    print("projection head:", head)
    m, h = count_parameters(model), count_parameters(head)
    print(f"trainable parameters: model {m:,} + projection head {h:,} = {m + h:,}")
    return 0
