"""Optical flow computed from video frames, for NVGesture prepared from its official download.

The download (nvGesture_v1) ships the sensors' videos but no optical flow; the BSS code reads
flow arrays it computed beforehand with a method it does not name. `clip_flow` computes a
dense flow between consecutive frames with the Horn-Schunck method (brightness constancy
plus a smoothness term), coarse to fine over an image pyramid, warping the second frame by
the current estimate at each level so that motions of several pixels are found. Vectors are
in pixels of the frames given (x first, then y), as the flow files are.

This is a substitute, not the authors' flow: a model trained on it is consistent with
itself, but checkpoints trained on TV-L1 flow (e.g. I3D's flow_imagenet.pt, which also
expects flow clipped to [-20, 20] and scaled to [-1, 1]) see differently scaled inputs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

ALPHA = 0.06  # smoothness weight, for intensities in [0, 1] (15 on a 0-255 scale)
ITERATIONS = 60  # Jacobi updates per pyramid level
MIN_SIDE = 8  # the coarsest level is the last whose sides are all >= this

def _pad(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (1, 1, 1, 1), mode="replicate")


def _smooth(p: torch.Tensor, dim: int) -> torch.Tensor:
    """[1, 2, 1] along `dim` (-1: x, -2: y) of a padded map, dropping that dim's padding."""
    n = p.shape[dim]
    return p.narrow(dim, 0, n - 2) + 2 * p.narrow(dim, 1, n - 2) + p.narrow(dim, 2, n - 2)


def _diff(p: torch.Tensor, dim: int) -> torch.Tensor:
    """[-1, 0, 1] along `dim` of a padded map, dropping that dim's padding."""
    n = p.shape[dim]
    return p.narrow(dim, 2, n - 2) - p.narrow(dim, 0, n - 2)


def _average(x: torch.Tensor) -> torch.Tensor:
    """Horn-Schunck's neighbour average: [[1, 2, 1], [2, 0, 2], [1, 2, 1]] / 12 (separable
    [1, 2, 1] x [1, 2, 1] less the centre), borders replicated. Slices, not conv2d: a
    one-channel 3x3 convolution is 20x slower on CPU."""
    return (_smooth(_smooth(_pad(x), -1), -2) - 4 * x) / 12


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives (per pixel) along x and y, borders replicated."""
    p = _pad(x)
    return _smooth(_diff(p, -1), -2) / 8, _smooth(_diff(p, -2), -1) / 8


def _warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """`image` (N, 1, H, W) sampled at x + u, y + v (bilinear, borders replicated)."""
    h, w = image.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    gx = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    gy = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border",
                         align_corners=True)


def _level(first: torch.Tensor, second: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Refine `flow` (N, 2, H, W) from `first` to `second` at one pyramid level."""
    warped = _warp(second, flow)
    ix, iy = _gradients((first + warped) / 2)
    it = warped - first
    u0, v0 = flow[:, :1], flow[:, 1:]
    u, v = u0.clone(), v0.clone()
    denominator = ALPHA**2 + ix**2 + iy**2
    for _ in range(ITERATIONS):
        ub, vb = _average(u), _average(v)
        t = (ix * (ub - u0) + iy * (vb - v0) + it) / denominator
        u, v = ub - ix * t, vb - iy * t
    return torch.cat([u, v], dim=1)


def pair_flow(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Flow (N, 2, H, W) from each `first` to its `second` image, (N, 1, H, W) in [0, 1]."""
    pyramid = [(first, second)]
    while min(pyramid[-1][0].shape[-2:]) // 2 >= MIN_SIDE:
        a, b = pyramid[-1]
        pyramid.append((F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)))
    a, _ = pyramid[-1]
    flow = torch.zeros(a.shape[0], 2, *a.shape[-2:])
    for a, b in reversed(pyramid):
        if flow.shape[-2:] != a.shape[-2:]:
            scale = torch.tensor([a.shape[-1] / flow.shape[-1], a.shape[-2] / flow.shape[-2]])
            flow = F.interpolate(flow, size=a.shape[-2:], mode="bilinear",
                                 align_corners=False) * scale.view(1, 2, 1, 1)
        flow = _level(a, b, flow)
    return flow


def clip_flow(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 frames -> (2, T, H, W) float32 flow from each frame to the next;
    the last frame, which has no next, gets zero flow (so the clip keeps T steps)."""
    gray = torch.from_numpy(frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114],
                                                                 np.float32)) / 255
    gray = gray.unsqueeze(1)  # (T, 1, H, W)
    out = torch.zeros(2, *gray.shape[:1], *gray.shape[-2:])
    if len(gray) > 1:
        with torch.no_grad():
            out[:, :-1] = pair_flow(gray[:-1], gray[1:]).transpose(0, 1)
    return out.numpy()
