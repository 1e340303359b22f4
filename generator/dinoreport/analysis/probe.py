"""A linear foreground probe: logistic regression on feature cells against reference masks,
scored on images it was not trained on.

All functions are pure: arrays in, arrays/dataclasses out.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._threads import on_one_blas_thread

__all__ = ["ProbeResult", "image_folds", "stack_training", "train_probe", "probe_images"]

# Inverse regularisation strengths tried inside each training fold (on standardised features),
# two inner folds and the lbfgs tolerance: on the default report (27 outlined photos, 12 model
# stages, random init) four values of C, three inner folds, tolerance 1e-4, 64 cells per image
# and float64 took 14.2 s, these settings with 32 cells and float32 2.1 s (4 outer folds), for
# average precisions within 0.03 of each other.
DEFAULT_CS: tuple[float, ...] = (1e-2, 1e-1, 1.0)
TOL = 1e-3


@dataclass(frozen=True)
class ProbeResult:
    """Held-out probe predictions for a set of images.

    Attributes
    ----------
    proba : tuple of (N_i,) ndarray of float64
        P(subject) of every cell of image i from a probe that never saw image i.
    average_precision : float
        Average precision of all held-out cells pooled (sklearn's ``average_precision_score``);
        NaN when no cell or every cell is subject.
    iou : (n_images,) ndarray of float64
        Per image: IoU of ``proba >= 0.5`` against the labels (1 when both are empty).
    base_rate : float
        Share of subject cells over all images: the average precision of a random score.
    chosen_c : (n_folds,) ndarray of float64
        The inverse regularisation strength each outer fold chose by its inner CV.
    """

    proba: tuple[np.ndarray, ...]
    average_precision: float
    iou: np.ndarray
    base_rate: float
    chosen_c: np.ndarray


def image_folds(n_images: int, folds: int) -> list[np.ndarray]:
    """Split image indices ``0..n_images-1`` into outer folds, round robin.

    Parameters
    ----------
    n_images : int >= 2
    folds : int
        Number of folds; 0 or >= n_images: one image per fold (leave-one-image-out).

    Returns
    -------
    list of (n_k,) int arrays, the held-out images of each fold, ascending.
    """
    if n_images < 2:
        raise ValueError(f"a held-out probe needs at least 2 images, got {n_images}")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 0 or folds == 1:
        raise ValueError(f"folds must be 0 (leave-one-image-out) or an integer >= 2, got {folds!r}")
    k = n_images if folds == 0 or folds >= n_images else int(folds)
    idx = np.arange(n_images)
    return [idx[idx % k == j] for j in range(k)]


def _sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``n`` cell indices of one image, the same share of subject cells as the image
    (rounded, at least one of each class the image has), so each image weighs alike."""
    total = labels.size
    if total <= n:
        return np.arange(total)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    n_pos = int(round(n * pos.size / total))
    n_pos = min(max(n_pos, 1 if pos.size else 0), pos.size, n - (1 if neg.size else 0))
    pick = np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n - n_pos, replace=False)])
    return np.sort(pick)


def stack_training(feats: Sequence[np.ndarray], labels: Sequence[np.ndarray], images: np.ndarray,
                   cells_per_image: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training rows of ``images``: at most ``cells_per_image`` cells of each (stratified,
    drawn with ``rng``) as float64 ``x`` (N, D), bool ``y`` (N,) and image index ``groups`` (N,),
    as :func:`train_probe` takes them."""
    xs, ys, gs = [], [], []
    for i in images:
        pick = _sample(labels[i], cells_per_image, rng)
        xs.append(feats[i][pick])
        ys.append(labels[i][pick])
        gs.append(np.full(pick.size, i))
    x = np.concatenate(xs)
    return x.astype(np.float32 if x.dtype == np.float32 else np.float64), np.concatenate(ys), np.concatenate(gs)


@on_one_blas_thread
def train_probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, cs: Sequence[float] = DEFAULT_CS,
                inner_folds: int = 2):
    """Fit a standardised logistic regression, choosing C by grouped inner cross-validation.

    Parameters
    ----------
    x : (N, D) float32 or float64 array (float32 is fitted in float32, twice as fast);
    y : (N,) bool; groups : (N,) int image index of each row
        The inner folds split by image (round robin over the distinct groups), so the
        chosen C is the one that generalises to unseen images.
    cs : inverse regularisation strengths to try; inner_folds : int >= 2

    Returns
    -------
    (sklearn Pipeline, chosen C). With one class only, or fewer than two images, no CV is
    possible: C is the middle of ``cs``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ids = np.unique(groups)
    splits = []
    if ids.size >= 2:
        k = min(inner_folds, ids.size)
        for j in range(k):
            val = np.isin(groups, ids[np.arange(ids.size) % k == j])
            # A split whose training or validation part holds one class cannot be scored.
            if np.unique(y[val]).size == 2 and np.unique(y[~val]).size == 2:
                splits.append((np.flatnonzero(~val), np.flatnonzero(val)))
    with warnings.catch_warnings():
        # lbfgs may stop at max_iter on nearly separable cells; the probabilities are still usable.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if np.unique(y).size < 2:
            raise ValueError("the probe's training cells hold one class only: every training image "
                             "is all subject or all background")
        if splits:
            lr = LogisticRegressionCV(Cs=list(cs), cv=splits, scoring="neg_log_loss", max_iter=300, tol=TOL,
                                      l1_ratios=(0.0,), use_legacy_attributes=False)
        else:
            lr = LogisticRegression(C=float(cs[len(cs) // 2]), max_iter=300, tol=TOL)
        model = make_pipeline(StandardScaler(), lr).fit(x, y)
    c = float(np.ravel(lr.C_)[0]) if splits else float(cs[len(cs) // 2])
    return model, c


def probe_images(features: Sequence[np.ndarray], labels: Sequence[np.ndarray], *, folds: int = 0,
                 cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 2, cells_per_image: int = 32,
                 seed: int = 0) -> ProbeResult:
    """Held-out linear probe of the subject over a set of images.

    Parameters
    ----------
    features : sequence of (N_i, D) float arrays
        Cells of image i as rows (e.g. :func:`~dinoreport.analysis.across.pixels`); float32
        features are fitted in float32.
    labels : sequence of (N_i,) bool arrays
        True where the cell is subject (e.g. reference mask share >= 0.5).
    folds : int
        Outer folds over images (:func:`image_folds`); 0: leave-one-image-out.
    cs, inner_folds
        As :func:`train_probe`: C is chosen inside each outer training fold only.
    cells_per_image : int >= 2
        Training cells drawn per training image (stratified, seeded): bounds the fit's cost
        and weighs images alike. Every cell of a held-out image is scored.
    seed : int
        Seed of the cell draw.

    Returns
    -------
    ProbeResult
    """
    from sklearn.metrics import average_precision_score

    from .masks import mask_iou

    if len(features) != len(labels):
        raise ValueError(f"got {len(features)} feature arrays but {len(labels)} label arrays")
    feats = [np.asarray(f) for f in features]
    labs = [np.asarray(y, dtype=bool).reshape(-1) for y in labels]
    for i, (f, y) in enumerate(zip(feats, labs)):
        if f.ndim != 2 or f.shape[0] != y.size:
            raise ValueError(f"features[{i}] must be (N, D) with N = labels[{i}].size = {y.size}, got {f.shape}")
    if cells_per_image < 2:
        raise ValueError(f"cells_per_image must be >= 2, got {cells_per_image}")
    rng = np.random.default_rng(seed)
    proba: list[np.ndarray | None] = [None] * len(feats)
    chosen = []
    n = len(feats)
    for held in image_folds(n, folds):
        train = np.setdiff1d(np.arange(n), held)
        x, y, g = stack_training(feats, labs, train, cells_per_image, rng)
        model, c = train_probe(x, y, g, cs=cs, inner_folds=inner_folds)
        chosen.append(c)
        for i in held:
            proba[i] = model.predict_proba(feats[i])[:, 1].astype(np.float64)
    all_p = np.concatenate(proba)  # type: ignore[arg-type]
    all_y = np.concatenate(labs)
    ap = float(average_precision_score(all_y, all_p)) if 0 < all_y.sum() < all_y.size else float("nan")
    iou = np.array([mask_iou((p >= 0.5)[None], y[None]) for p, y in zip(proba, labs)])  # type: ignore[index]
    return ProbeResult(proba=tuple(proba), average_precision=ap, iou=iou,  # type: ignore[arg-type]
                       base_rate=float(all_y.mean()), chosen_c=np.array(chosen))
