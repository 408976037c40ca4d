"""Images, label maps, the CamVid palette and SegNet-layout datasets.

Images come back as uint8 (H, W, 3) RGB whatever the file holds (RGBA drops
alpha, grayscale is replicated, 16-bit is scaled to 8 bits); label maps as
uint8/int (H, W). Unreadable files raise ``DataError`` naming the file, decompression
bombs and images that do not fit in memory included.

``read_image`` refuses an image of more than ``pixel_limit()`` pixels before decoding it
(a guard against decompression bombs): ``max_pixels`` if given, else the environment
variable MINITNET_MAX_PIXELS (a number of pixels, or ``none`` for no limit), else PIL's
``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 by default).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError

__all__ = [
    "CAMVID_CLASSES", "CAMVID_PALETTE", "CAMVID_VOID", "IMAGE_SUFFIXES",
    "MAX_PIXELS_ENV", "pixel_limit", "read_image", "read_label", "colorize", "list_split",
]

#: environment variable that sets the pixel limit of ``read_image`` (a number, or none)
MAX_PIXELS_ENV = "MINITNET_MAX_PIXELS"
_PIL_LOCK = threading.Lock()  # PIL's limit is a module global: set it only while holding this

CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign/symbol",
                  "fence", "car", "pedestrian", "bicyclist")
CAMVID_VOID = 11
CAMVID_PALETTE = np.array([
    [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
    [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192], [0, 0, 0],
], dtype=np.uint8)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")


def pixel_limit(value=None) -> int | None:
    """The pixel limit of ``read_image``: ``value`` if given (an int, or a string as the
    environment variable takes), else MINITNET_MAX_PIXELS, else PIL's limit
    (``PIL.Image.MAX_IMAGE_PIXELS``, 89,478,485 unless changed). None: no limit."""
    source = "max_pixels"
    if value is None:
        value = os.environ.get(MAX_PIXELS_ENV)
        source = MAX_PIXELS_ENV
        if value is None or not str(value).strip():
            from PIL import Image

            with _PIL_LOCK:
                return Image.MAX_IMAGE_PIXELS
    if isinstance(value, str):
        if value.strip().lower() == "none":
            return None
        try:
            value = int(value.strip().replace("_", ""))
        except ValueError:
            raise ConfigError(f"{source}={value!r}: expected a number of pixels like 200000000, or none "
                              f"for no limit") from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{source}={value!r}: expected a positive number of pixels, or none for no limit")
    return int(value)


_LIMIT_FROM = f"--max-pixels, else {MAX_PIXELS_ENV}, else PIL.Image.MAX_IMAGE_PIXELS"
_RAISE_LIMIT = f"if the image is meant, raise the limit: --max-pixels N or {MAX_PIXELS_ENV}=N (none: no limit)"


@contextlib.contextmanager
def _open_limited(path: str, limit, what: str):
    """``PIL.Image.open(path)``, loaded, refused if over ``limit`` pixels before decoding.

    PIL's limit is a module global: it is set only under ``_PIL_LOCK`` and restored after."""
    from PIL import Image

    with _PIL_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:  # reads the header only
                w, h = im.size
                if limit is not None and w * h > limit:
                    raise DataError(f"{path}: refused as a possible decompression bomb: {w}x{h} = {w * h:,} "
                                    f"pixels is over the limit of {limit:,} ({_LIMIT_FROM}); {_RAISE_LIMIT}")
                Image.MAX_IMAGE_PIXELS = limit  # further frames (GIF, ICO) are checked the same way
                im.load()
                yield im
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _read_failed(path: str, e: BaseException, what: str) -> DataError:
    """The DataError of a failed read of ``what`` ("image", "label map")."""
    from PIL import Image

    if isinstance(e, FileNotFoundError):
        return DataError(f"{path}: no such file")
    if isinstance(e, IsADirectoryError):
        return DataError(f"{path}: is a directory, expected {'an image file' if what == 'image' else 'a ' + what}")
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return DataError(f"{path}: refused as a possible decompression bomb ({e}); {_RAISE_LIMIT}")
    if isinstance(e, MemoryError):
        return DataError(f"{path}: not enough memory to decode this {what}; free memory or use a smaller {what}")
    detail = str(e).replace(repr(path), "the file").replace(path, "the file")  # the path once
    return DataError(f"{path}: cannot read {what} ({type(e).__name__}: {detail})")


def read_image(path, max_pixels=None) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3).

    ``max_pixels``: an image of more pixels is refused (``DataError``) before it is decoded;
    default ``pixel_limit()`` (MINITNET_MAX_PIXELS, else PIL's limit); "none": no limit.
    An image that does not fit in memory is a ``DataError`` too.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    limit = pixel_limit(max_pixels)
    try:
        with _open_limited(path, limit, "image") as im:
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _read_failed(path, e, "image") from None
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise DataError(f"{path}: decoded to shape {a.shape}, expected (H, W, 3)")
    return np.ascontiguousarray(a)


def read_label(path, max_pixels=None) -> np.ndarray:
    """Read a single-channel label map (class indices) as uint8 (H, W); ``max_pixels`` as
    ``read_image``."""
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    limit = pixel_limit(max_pixels)
    try:
        with _open_limited(path, limit, "label map") as im:
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise DataError(f"{path}: label maps must be single-channel (mode L/P/I), got mode {im.mode}")
            a = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _read_failed(path, e, "label map") from None
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
