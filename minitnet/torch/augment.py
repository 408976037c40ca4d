"""Training-time augmentation and class balancing for the trainer (``minitnet.torch.train``).

One training sample goes through a fixed, written order::

    random scale (image bilinear, label nearest)  ->  random crop window (padded where the
    scaled image is smaller: image 0, label void)  ->  random horizontal flip  ->
    photometric jitter of the image pixels (brightness, contrast, saturation)

Every draw comes from the ``rng: np.random.Generator`` passed in, in that order, and only
for the steps that are switched on: with scaling and jitter off, ``augment_pair`` draws
exactly what the trainer drew before they existed (crop y, crop x, flip), so a run without
them is bit-identical to the earlier trainer.

Coordinates: resizing uses half-pixel centres (``align_corners=False``). The image's output
pixel ``i`` samples the source at ``(i + 0.5) * in / out - 0.5`` (bilinear); the label's takes
source pixel ``floor((i + 0.5) * in / out)`` (``nearest-exact``), the nearest one to the same
point, so labels stay aligned with pixels at every scale.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["parse_scale_range", "parse_jitter", "rescale", "sample_jitter", "jitter", "augment_pair",
           "median_frequency_weights"]

# ITU-R 601 luma, the grey of torchvision's rgb_to_grayscale
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def parse_scale_range(spec: str) -> tuple[float, float]:
    """``"lo,hi"`` -> (lo, hi) with 0 < lo <= hi (argparse type of ``--scale-range``)."""
    try:
        lo, hi = (float(v) for v in spec.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers 'lo,hi' such as 0.5,2.0, got {spec!r}") from None
    if not (0 < lo <= hi <= 8):
        raise argparse.ArgumentTypeError(f"expected 0 < lo <= hi <= 8, got lo={lo}, hi={hi}")
    return lo, hi


def parse_jitter(spec: str) -> tuple[float, float, float]:
    """``"B,C,S"`` -> (brightness, contrast, saturation) strengths in [0, 1] (argparse type of ``--jitter``)."""
    try:
        b, c, s = (float(v) for v in spec.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three strengths 'B,C,S' such as 0.3,0.3,0.3, got {spec!r}") \
            from None
    if not all(0 <= v <= 1 for v in (b, c, s)):
        raise argparse.ArgumentTypeError(f"strengths must lie in [0, 1], got B={b}, C={c}, S={s}")
    return b, c, s


def rescale(img: np.ndarray, lab: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale an image bilinearly and its label map by nearest neighbour, by the factor ``s``.

    Shapes:
        img: (H, W, 3) uint8   lab: (H, W) uint8
        out: (OH, OW, 3) uint8, (OH, OW) uint8, OH = max(1, round(H*s)), OW = max(1, round(W*s))

    The same size returns the inputs unchanged (an identity, no resampling).
    """
    H, W = lab.shape
    OH, OW = max(1, int(round(H * s))), max(1, int(round(W * s))),
    if (OH, OW) == (H, W):
        return img, lab
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(OH, OW), mode="bilinear", align_corners=False)
    img = x[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()
    y = torch.from_numpy(np.ascontiguousarray(lab))[None, None].float()
    lab = F.interpolate(y, size=(OH, OW), mode="nearest-exact")[0, 0].to(torch.uint8).numpy()
    return np.ascontiguousarray(img), np.ascontiguousarray(lab)


def sample_jitter(rng: np.random.Generator, strengths) -> tuple[float, float, float]:
    """Factors (brightness, contrast, saturation), each uniform in [max(0, 1 - v), 1 + v] for its
    strength v; a strength 0 gives the factor 1 and draws nothing."""
    return tuple(float(rng.uniform(max(0.0, 1.0 - v), 1.0 + v)) if v > 0 else 1.0 for v in strengths)


def jitter(img: np.ndarray, factors) -> np.ndarray:
    """Photometric jitter of a uint8 RGB image, in this order, each clipped to [0, 255]:

    brightness b:  x * b
    contrast c:    (x - m) * c + m, m the mean grey level of the image
    saturation s:  (x - g) * s + g, g each pixel's grey level

    then rounded back to uint8. Factors (1, 1, 1) return ``img`` itself. Each output pixel
    depends only on its own input colour and the image's mean: the geometry is untouched.
    """
    b, c, s = factors
    if b == 1.0 and c == 1.0 and s == 1.0:
        return img
    x = img.astype(np.float32)
    if b != 1.0:
        x = np.clip(x * np.float32(b), 0, 255)
    if c != 1.0:
        m = np.float32((x @ _LUMA).mean()) if x.size else np.float32(0)
        x = np.clip((x - m) * np.float32(c) + m, 0, 255)
    if s != 1.0:
        g = (x @ _LUMA)[..., None]
        x = np.clip((x - g) * np.float32(s) + g, 0, 255)
    return np.rint(x).astype(np.uint8)


def augment_pair(img: np.ndarray, lab: np.ndarray, rng: np.random.Generator, crop: tuple[int, int], *,
                 scale_range=None, jitter_strengths=None, void: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """One training sample: scale, crop window, flip, jitter (module docstring), from ``rng``.

    Shapes:
        img: (H, W, 3) uint8   lab: (H, W) uint8   crop: (ch, cw)
        out: (ch', cw', 3) uint8, (ch', cw') uint8; without scaling ch' = min(ch, H), cw' = min(cw, W)
        (the earlier trainer's crop); with scaling exactly (ch, cw), the part of the window outside
        the scaled image filled with image 0 and label ``void``.
    """
    ch, cw = crop
    if scale_range is None:
        H, W = lab.shape
        ch, cw = min(ch, H), min(cw, W)
        oy = int(rng.integers(0, H - ch + 1))
        ox = int(rng.integers(0, W - cw + 1))
    else:
        lo, hi = scale_range
        s = float(rng.uniform(lo, hi)) if hi > lo else lo
        img, lab = rescale(img, lab, s)
        H, W = lab.shape
        # the window lies inside the image, or (image smaller than the crop) the image inside the window
        oy = int(rng.integers(min(0, H - ch), max(0, H - ch) + 1))
        ox = int(rng.integers(min(0, W - cw), max(0, W - cw) + 1))
    flip = rng.random() < 0.5
    y0, x0, y1, x1 = max(oy, 0), max(ox, 0), min(oy + ch, H), min(ox + cw, W)
    im, lb = img[y0:y1, x0:x1], lab[y0:y1, x0:x1]
    if jitter_strengths is not None:
        im = jitter(im, sample_jitter(rng, jitter_strengths))
    if (y1 - y0, x1 - x0) != (ch, cw):
        canvas_i = np.zeros((ch, cw, 3), np.uint8)
        canvas_l = np.full((ch, cw), void, np.uint8)
        canvas_i[y0 - oy:y1 - oy, x0 - ox:x1 - ox] = im
        canvas_l[y0 - oy:y1 - oy, x0 - ox:x1 - ox] = lb
        im, lb = canvas_i, canvas_l
    if flip:
        im, lb = im[:, ::-1], lb[:, ::-1]
    return im, lb


def median_frequency_weights(labels, classes: int, void: int) -> np.ndarray:
    """SegNet's median frequency balancing (Eigen and Fergus): w_c = median(freq) / freq(c).

    freq(c) = (pixels of class c) / (pixels of the label maps in which c is present), both counted
    without void pixels (and without values >= ``classes``). The median runs over the classes
    present; a class absent from every map gets weight 0.

    Shapes:
        labels: iterable of (H, W) integer maps (or one (N, H, W) array)   out: (classes,) float64
    """
    count = np.zeros(classes, np.int64)
    seen = np.zeros(classes, np.int64)
    for lab in labels:
        h = np.bincount(np.asarray(lab, np.int64).ravel(), minlength=max(classes, void + 1))
        h[void] = 0
        h = h[:classes]
        count += h
        seen += int(h.sum()) * (h > 0)
    present = count > 0
    if not present.any():
        raise ValueError(f"median_frequency_weights: no pixel of classes 0..{classes - 1} (void {void} ignored)")
    freq = np.zeros(classes)
    freq[present] = count[present] / seen[present]
    w = np.zeros(classes)
    w[present] = np.median(freq[present]) / freq[present]
    return w
