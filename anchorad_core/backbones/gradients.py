"""Functional-connectivity gradients: the ROI coordinates of Brain-JEPA's positional embedding.

Brain-JEPA describes each ROI by its position on the principal gradients of functional
connectivity (Margulies et al. 2016): a diffusion-map embedding of a group connectivity
matrix, 30 components per ROI, stored as a headerless CSV with one row per ROI (the
repository's ``data/gradient_mapping_450.csv``, computed with BrainSpace).

* :func:`load_gradient_csv` reads such a file exactly as the original code does.
* :func:`connectivity_gradients` computes gradients from a connectivity matrix with the
  BrainSpace recipe (``GradientMaps(kernel='normalized_angle', approach='dm')``): row-wise
  top-10 % sparsification, normalised-angle affinity, anisotropic (alpha = 0.5) multiscale
  diffusion maps. The eigenproblem is solved with :func:`scipy.linalg.eigh` on the symmetric
  conjugate of the diffusion operator; the affinity uses scikit-learn.
* :func:`build_gradient_csv` (also ``python -m anchorad_core.backbones.gradients``) writes a
  gradient CSV from a connectivity CSV, optionally reordering its ROIs first. It made
  ``resources/gradients/schaefer400_17n_gradients.csv`` (see the README there).
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import InputDataError

__all__ = ["load_gradient_csv", "connectivity_gradients", "build_gradient_csv"]


def load_gradient_csv(path: "str | Path") -> torch.Tensor:
    """Read a gradient CSV as Brain-JEPA does: ``(1, n_rois, n_gradients)`` float32.

    The file has no header, one row per ROI (in the ROI order of the time series) and one
    column per gradient; it is parsed with ``pandas.read_csv(path, header=None)``.

    Raises
    ------
    InputDataError
        If the file is missing, empty, not numeric or contains NaN/inf.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError("gradient CSV not found", path)
    try:
        frame = pd.read_csv(path, header=None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise InputDataError(f"not a readable gradient CSV ({exc})", path) from None
    if frame.empty or frame.shape[1] < 1:
        raise InputDataError("gradient CSV is empty", path)
    try:
        values = frame.to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise InputDataError(
            "gradient CSV must be purely numeric with no header row (one row per ROI, one "
            "column per gradient)", path) from None
    if not np.isfinite(values).all():
        raise InputDataError("gradient CSV contains NaN or infinite values", path)
    return torch.tensor(frame.values, dtype=torch.float32).unsqueeze(0)


def connectivity_gradients(
    fc: np.ndarray,
    n_components: int = 30,
    sparsity: float = 0.9,
    kernel: Literal["normalized_angle", "cosine"] = "normalized_angle",
    approach: Literal["dm", "le"] = "dm",
    alpha: float = 0.5,
    diffusion_time: float = 0,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of a connectivity matrix (BrainSpace's ``GradientMaps`` recipe).

    Parameters
    ----------
    fc
        ``(n, n)`` connectivity matrix (e.g. Pearson r between ROI time series).
    n_components
        Number of gradients.
    sparsity
        Fraction of the smallest entries zeroed in every row before the kernel (BrainSpace
        default 0.9: keep the top 10 %, ``int(0.1 * n)`` entries per row).
    kernel
        ``"normalized_angle"`` (``1 - arccos(cos_sim) / pi``, the default) or ``"cosine"``.
        Negative affinities are set to 0.
    approach
        ``"dm"``: diffusion maps (Coifman & Lafon 2006); ``"le"``: Laplacian eigenmaps
        (scikit-learn's :func:`~sklearn.manifold.spectral_embedding`, normalised Laplacian).
    alpha
        Anisotropic diffusion parameter of ``"dm"`` (0.5 = Fokker-Planck).
    diffusion_time
        ``0`` for multiscale diffusion maps (eigenvalues scaled by ``λ / (1 - λ)``), else the
        power applied to the eigenvalues.
    random_state
        Seed for ``"le"`` (the ``"dm"`` solver is deterministic).

    Returns
    -------
    gradients : ndarray, shape (n, n_components)
        One row per ROI; columns ordered by decreasing eigenvalue. As in BrainSpace, the
        eigenvectors are scaled so that the trivial one is all ones, multiplied by their
        (scaled) eigenvalues, and signed so that each column's largest-magnitude entry is
        positive.
    lambdas : ndarray, shape (n_components,)
        The (scaled) eigenvalues.
    """
    from scipy.linalg import eigh
    from scipy.sparse.csgraph import connected_components
    from sklearn.manifold import spectral_embedding
    from sklearn.metrics.pairwise import cosine_similarity

    x = np.array(fc, dtype=np.float64, copy=True)
    if x.ndim != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"connectivity matrix must be square, got shape {x.shape}")
    n = x.shape[0]
    if not np.isfinite(x).all():
        raise ValueError("connectivity matrix contains NaN or infinite values")
    if not 1 <= n_components <= n - 2:
        raise ValueError(f"n_components must be between 1 and {n - 2} for {n} ROIs, got {n_components}")

    # 1. keep the strongest (1 - sparsity) fraction of every row
    if sparsity:
        keep = int(n * (1.0 - sparsity))
        if keep <= 0:
            raise ValueError(f"sparsity {sparsity} keeps no entries of {n}-wide rows")
        top = np.argpartition(x, n - keep, axis=1)[:, -keep:]
        sparse = np.zeros_like(x)
        rows = np.arange(n)[:, None]
        sparse[rows, top] = x[rows, top]
        x = sparse
    # 2. affinity between the sparsified connectivity profiles
    affinity = cosine_similarity(x)
    if kernel == "normalized_angle":
        affinity = 1.0 - np.arccos(np.clip(affinity, -1.0, 1.0)) / np.pi
    elif kernel != "cosine":
        raise ValueError(f"unknown kernel {kernel!r}")
    affinity[affinity < 0] = 0.0
    affinity = (affinity + affinity.T) / 2.0  # exact symmetry against rounding
    if connected_components(affinity, directed=False)[0] != 1:
        warnings.warn("affinity graph is not connected; the first gradients will separate its components")

    if approach == "le":
        emb = spectral_embedding(affinity, n_components=n_components + 1, norm_laplacian=True,
                                 drop_first=False, random_state=random_state)[:, 1:]
        emb = emb * np.sign(emb[np.abs(emb).argmax(axis=0), np.arange(emb.shape[1])])
        return emb, np.full(n_components, np.nan)
    if approach != "dm":
        raise ValueError(f"unknown approach {approach!r}")

    # 3. anisotropic normalisation W_a = D^-a W D^-a
    w = affinity
    if alpha > 0:
        d = np.power(w.sum(axis=1), -alpha)
        w = w * d[:, None] * d[None, :]
    # 4. diffusion operator P = D_a^-1 W_a, through its symmetric conjugate D_a^-1/2 W_a D_a^-1/2
    d_a = w.sum(axis=1)
    inv_sqrt = 1.0 / np.sqrt(d_a)
    sym = w * inv_sqrt[:, None] * inv_sqrt[None, :]
    sym = (sym + sym.T) / 2.0
    evals, evecs = eigh(sym, subset_by_index=[n - n_components - 1, n - 1])
    evals, evecs = evals[::-1], evecs[:, ::-1]
    psi = evecs * inv_sqrt[:, None]  # right eigenvectors of P
    psi /= np.linalg.norm(psi, axis=0, keepdims=True)
    # 5. BrainSpace conventions: trivial eigenvector = ones, eigenvalues relative to the first
    psi /= psi[:, [0]]
    evals = evals / evals[0]
    evals, psi = evals[1:], psi[:, 1:]
    if diffusion_time <= 0:
        evals = evals / (1.0 - evals)
    else:
        evals = evals ** diffusion_time
    psi = psi * evals[None, :]
    psi *= np.sign(psi[np.abs(psi).argmax(axis=0), np.arange(psi.shape[1])])
    return psi, evals


def build_gradient_csv(
    fc_path: "str | Path",
    out_path: "str | Path",
    order: "Sequence[int] | None" = None,
    n_components: int = 30,
) -> np.ndarray:
    """Compute gradients of a connectivity CSV and write them as a Brain-JEPA gradient CSV.

    Parameters
    ----------
    fc_path
        Comma-separated ``(n, n)`` matrix without header (``.csv`` or ``.csv.gz``).
    out_path
        Output CSV: ``n`` rows, ``n_components`` columns, ``%.8e``, no header.
    order
        Optional 1-based indices: row ``i`` of the output is ROI ``order[i]`` of the matrix
        (e.g. the ``group_fc_index`` column of ``schaefer400_17n_labels.tsv``).
    n_components
        Number of gradients (Brain-JEPA uses 30).
    """
    fc = np.loadtxt(fc_path, delimiter=",")
    if order is not None:
        idx = np.asarray(order, dtype=int) - 1
        if sorted(idx.tolist()) != list(range(fc.shape[0])):
            raise ValueError("order must be a permutation of 1..n")
        fc = fc[np.ix_(idx, idx)]
    gradients, _ = connectivity_gradients(fc, n_components=n_components)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part")
    np.savetxt(tmp, gradients, fmt="%.8e", delimiter=",")
    tmp.replace(out_path)
    return gradients


def _main(argv: "Sequence[str] | None" = None) -> None:
    parser = argparse.ArgumentParser(description=(build_gradient_csv.__doc__ or "").splitlines()[0])
    parser.add_argument("fc", help="connectivity CSV (n x n, no header; .csv or .csv.gz)")
    parser.add_argument("out", help="gradient CSV to write")
    parser.add_argument("--order-tsv", help="TSV with a column of 1-based matrix indices per output row")
    parser.add_argument("--order-column", default="group_fc_index")
    parser.add_argument("--n-components", type=int, default=30)
    args = parser.parse_args(argv)
    order = None
    if args.order_tsv:
        order = pd.read_csv(args.order_tsv, sep="\t")[args.order_column].to_numpy()
    build_gradient_csv(args.fc, args.out, order=order, n_components=args.n_components)


if __name__ == "__main__":
    _main()
