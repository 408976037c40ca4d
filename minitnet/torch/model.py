"""TorchItNet: the ItNet of spec/ARCHITECTURE.md as a plain torch.nn.Module.

Parameter names are the HDF5 tensor names (``weights/FORMAT.md``):

    stem1.conv  Conv2d(3, f-3, 3, stride 2, pad 1)     stem1.bn  BatchNorm2d(f)
    stem2.conv  Conv2d(f, f, 3, stride 2, pad 1)       stem2.bn  BatchNorm2d(2f)
    scales.{l}.conv  Conv2d(2f, f_r, 3, pad 1)         scales.{l}.bn  BatchNorm2d(f_r)
    bodies.{b}.mix.{l}  Conv2d(L*f_r, f_r, 3, pad 1)   (bodies used by an iteration n > 1)
    bodies.{b}.brb.{l}.{k}.expand   Conv2d(f_r, t*f_r, 1)
    bodies.{b}.brb.{l}.{k}.dw       Conv2d(t*f_r, t*f_r, 3, pad 1, groups=t*f_r)
    bodies.{b}.brb.{l}.{k}.project  Conv2d(t*f_r, f_r, 1)
    inter_bn.{n}.{l}  BatchNorm2d(f_r), before iteration n = 2..N
    heads.{n}  Conv2d(L*f_r, C, 1, bias)               for every head iteration n

b = 0 when weights are shared, b = n - 1 otherwise. Only convolutions of the
classification heads have a bias.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ItNetConfig

__all__ = ["TorchItNet"]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _pool(x: torch.Tensor, k: int) -> torch.Tensor:
    if k == 1:
        return x
    return F.max_pool2d(x, k, k, ceil_mode=True)


class BRB(nn.Module):
    """MobileNetV2 inverted residual, stride 1, no BN: x + project(relu6(dw(relu6(expand(x)))))."""

    def __init__(self, c: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.expand = nn.Conv2d(c, hidden, 1, bias=False)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.project = nn.Conv2d(hidden, c, 1, bias=False)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        h = F.relu6(self.expand(x))
        h = self.drop(F.relu6(self.dw(h)))
        return x + self.project(h)


class Body(nn.Module):
    """One set of iterative-block weights: L mixing convs (optional) and L x K BRBs."""

    def __init__(self, cfg: ItNetConfig, has_mix: bool, dropout: float = 0.0):
        super().__init__()
        L, fr = cfg.levels, cfg.f_r
        self.mix = (
            nn.ModuleList(nn.Conv2d(L * fr, fr, 3, padding=1, bias=False) for _ in range(L)) if has_mix else None
        )
        self.brb = nn.ModuleList(
            nn.ModuleList(BRB(fr, cfg.hidden, dropout) for _ in range(cfg.blocks)) for _ in range(L)
        )


class ConvBN(nn.Module):
    def __init__(self, cin, cout, bn_channels, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(bn_channels)


class TorchItNet(nn.Module):
    """The ItNet of ``config`` in PyTorch. ``forward`` returns the list of head logits
    (B, C, H, W) in head order (``config.head_iterations``)."""

    def __init__(self, config: ItNetConfig | None = None, dropout: float = 0.0):
        super().__init__()
        cfg = config or ItNetConfig()
        self.config = cfg
        f, fr, L = cfg.width, cfg.f_r, cfg.levels
        self.stem1 = ConvBN(3, f - 3, f, 2)
        self.stem2 = ConvBN(f, f, 2 * f, 2)
        self.scales = nn.ModuleList(ConvBN(2 * f, fr, fr, 1) for _ in range(L))
        self.bodies = nn.ModuleList(Body(cfg, cfg.body_has_mix(b), dropout) for b in range(cfg.bodies))
        self.inter_bn = nn.ModuleDict(
            {str(n): nn.ModuleList(nn.BatchNorm2d(fr) for _ in range(L)) for n in range(2, cfg.iterations + 1)}
        )
        self.heads = nn.ModuleDict({str(n): nn.Conv2d(L * fr, cfg.classes, 1) for n in cfg.head_iterations})

    # -- pieces ------------------------------------------------------------
    def data_block(self, x):
        """Image (B,3,H,W) -> L scale states (B, f_r, ceil(H/2^(l+2)), ...)."""
        h = torch.cat([self.stem1.conv(x), _pool(x, 2)], 1)
        h = F.relu(self.stem1.bn(h))
        h = torch.cat([self.stem2.conv(h), _pool(h, 2)], 1)
        h = F.relu(self.stem2.bn(h))
        return [F.relu(s.bn(s.conv(_pool(h, 2**l)))) for l, s in enumerate(self.scales)]

    def iteration(self, states, n: int):
        """Iteration n (1-based) of the iterative block."""
        cfg = self.config
        body = self.bodies[cfg.body_index(n)]
        if n > 1:
            states = [bn(s) for bn, s in zip(self.inter_bn[str(n)], states)]
            mixed = []
            for l, s in enumerate(states):
                size = tuple(s.shape[-2:])
                cat = torch.cat([_resize(t, size) for t in states], 1)
                mixed.append(F.relu(body.mix[l](cat) + s))
            states = mixed
        out = []
        for l, s in enumerate(states):
            for brb in body.brb[l]:
                s = brb(s)
            out.append(s)
        return out

    def head(self, states, n: int, out_size):
        """Classification block of iteration n: logits (B, C, H, W)."""
        H, W = out_size
        size = (-(-H // 8), -(-W // 8))
        cat = torch.cat([_resize(s, size) for s in states], 1)
        return _resize(self.heads[str(n)](cat), (H, W))

    def iter_outputs(self, x, last: int | None = None):
        """Yield (n, logits) for every head iteration n <= last."""
        cfg = self.config
        last = cfg.iterations if last is None else last
        states = self.data_block(x)
        heads = set(cfg.head_iterations)
        for n in range(1, last + 1):
            states = self.iteration(states, n)
            if n in heads:
                yield n, self.head(states, n, x.shape[-2:])

    def forward(self, x):
        return [logits for _, logits in self.iter_outputs(x)]
