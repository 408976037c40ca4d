"""The paper's measures (Section II-C): confusion matrix, mIoU, AUC; counts from the graph IR."""

from __future__ import annotations

import numpy as np

from .errors import DataError, ShapeError

__all__ = ["confusion_matrix", "iou_per_class", "mean_iou"]


def confusion_matrix(pred, label, classes: int, void: int | None = None) -> np.ndarray:
    """(classes, classes) int64 counts, rows = true label, columns = prediction.

    Pixels whose label is ``void`` are ignored. Labels outside 0..classes-1 (other
    than void) raise DataError.
    """
    pred = np.asarray(pred)
    label = np.asarray(label)
    if pred.shape != label.shape:
        raise ShapeError(f"confusion_matrix: prediction shape {pred.shape} differs from label shape {label.shape}")
    label = label.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    if void is not None:
        keep = label != void
        label, pred = label[keep], pred[keep]
    if label.size and (label.min() < 0 or label.max() >= classes):
        bad = np.unique(label[(label < 0) | (label >= classes)])[:10].tolist()
        raise DataError(f"confusion_matrix: label values {bad} are outside 0..{classes - 1}" +
                        (f" (void={void} is ignored)" if void is not None else ""))
    if pred.size and (pred.min() < 0 or pred.max() >= classes):
        raise DataError(f"confusion_matrix: predictions outside 0..{classes - 1}")
    return np.bincount(label * classes + pred, minlength=classes * classes).reshape(classes, classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU of every class, TP / (TP + FP + FN); NaN for a class absent from labels and predictions."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU over classes present in labels or predictions (NaN classes skipped)."""
    iou = iou_per_class(conf)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")
