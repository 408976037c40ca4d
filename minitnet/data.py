"""Images, label maps, the CamVid palette and SegNet-layout datasets.

Images come back as uint8 (H, W, 3) RGB whatever the file holds (RGBA drops
alpha, grayscale is replicated, 16-bit is scaled to 8 bits); label maps as
uint8/int (H, W). Unreadable files raise ``DataError`` naming the file, decompression
bombs (Pillow's ``MAX_IMAGE_PIXELS``) and images that do not fit in memory included.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = [
    "CAMVID_CLASSES", "CAMVID_PALETTE", "CAMVID_VOID", "IMAGE_SUFFIXES",
    "read_image", "read_label", "colorize", "list_split",
]

CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign/symbol",
                  "fence", "car", "pedestrian", "bicyclist")
CAMVID_VOID = 11
CAMVID_PALETTE = np.array([
    [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
    [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192], [0, 0, 0],
], dtype=np.uint8)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")


def read_image(path) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3)."""
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                a = np.asarray(im, dtype=np.float64)
                top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
                a = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
                a = np.repeat(a[..., None], 3, axis=2)
            elif mode == "F":
                raise DataError(f"{path}: floating-point images are not supported, expected 8- or 16-bit RGB/gray")
            else:
                a = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an image file") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: refused as a possible decompression bomb ({e}); if the image is genuine, "
                        f"raise Pillow's limit: PIL.Image.MAX_IMAGE_PIXELS = <pixels> (None: no limit)") from None
    except MemoryError:
        raise DataError(f"{path}: the image does not fit in memory") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise DataError(f"{path}: decoded to shape {a.shape}, expected (H, W, 3)")
    return np.ascontiguousarray(a)


def read_label(path) -> np.ndarray:
    """Read a single-channel label map (class indices) as uint8 (H, W)."""
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise DataError(f"{path}: label maps must be single-channel (mode L/P/I), got mode {im.mode}")
            a = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a label map") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: refused as a possible decompression bomb ({e}); if the label map is genuine, "
                        f"raise Pillow's limit: PIL.Image.MAX_IMAGE_PIXELS = <pixels> (None: no limit)") from None
    except MemoryError:
        raise DataError(f"{path}: the label map does not fit in memory") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read label map ({type(e).__name__}: {e})") from None
    if a.ndim != 2:
        raise DataError(f"{path}: label map has shape {a.shape}, expected (H, W)")
    if a.size and int(a.max()) > 255:
        raise DataError(f"{path}: label values up to {int(a.max())}, expected class indices <= 255")
    return a.astype(np.uint8)


def colorize(classes: np.ndarray, palette: np.ndarray = CAMVID_PALETTE) -> np.ndarray:
    """Class map (H, W) -> RGB (H, W, 3) uint8 with ``palette`` (indices past it wrap)."""
    return palette[np.asarray(classes) % len(palette)]


def list_split(data_dir, split: str = "val") -> list[tuple[Path, Path]]:
    """(image, label) path pairs of a SegNet-layout split: ``<split>/`` and ``<split>annot/``."""
    if data_dir is None or str(data_dir) == "":
        raise DataError("the dataset folder path is empty; expected a folder with '<split>/' and '<split>annot/'")
    root = Path(data_dir)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: is a file, expected the dataset folder (with '{split}/' and '{split}annot/')")
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    img_dir, lab_dir = root / split, root / f"{split}annot"
    missing = [str(d.name) + "/" for d in (img_dir, lab_dir) if not d.is_dir()]
    if missing:
        present = sorted(p.name + "/" for p in root.iterdir() if p.is_dir())
        raise DataError(
            f"{root}: missing folders {missing} for split {split!r}; expected the SegNet layout "
            f"'{split}/' (images) and '{split}annot/' (labels), found {present}"
        )
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"{img_dir}: split {split!r} has no images")
    pairs, lost = [], []
    for p in images:
        lab = lab_dir / p.name
        if not lab.exists():
            cands = [q for q in lab_dir.glob(p.stem + ".*")]
            if not cands:
                lost.append(p.name)
                continue
            lab = cands[0]
        pairs.append((p, lab))
    if lost:
        raise DataError(f"{lab_dir}: no label map for {len(lost)} images, e.g. {lost[:5]}")
    return pairs
