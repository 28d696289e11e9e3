"""Q-former cross-attention of one anchor round, mapped back to the inputs.

For anchor ``m̂`` the Q-former has one uni-modal block per auxiliary modality ``m`` (``N_q``
queries attending to ``m``'s phase-1 tokens) and one cross-modal block (``N_q`` queries attending
to the uni-modal blocks' outputs). :func:`round_attention` takes the last layer's weights of every
block (``RoundOutput.attention``, ``(1, heads, N_q, keys)``), checks that every query row sums to
1 over the valid keys, averages over heads (the per-query ``N_q x keys`` matrix is kept) and over
queries, and maps the per-key mean back to the input:

* sMRI tokens -> UniFormer token grid (undoing its ``(Z, X, Y)`` token order) -> cube -> the
  subject's native T1 grid;
* fMRI tokens -> per ROI (sum over time patches) and per ROI x time patch;
* text tokens -> words of the note;
* DNA tokens -> bases along each string (and the 6-mer table);
* cross block -> the share of attention on each auxiliary modality's block (sum over its queries).

Blocks of missing auxiliary modalities are masked in the model and get no map here.

**How far from uniform.** Every block also carries how far its mean attention is from the
uniform distribution over its ``n`` valid keys (:func:`uniformity`): the normalised entropy
``H / log(n)`` (1 = uniform) and the max / uniform ratio ``max(weight) * n`` (1 = uniform).
A map is **near uniform** when its normalised entropy is at least
:data:`NEAR_UNIFORM_ENTROPY` (0.98) *and* no key gets :data:`NEAR_UNIFORM_MAX_RATIO` (2) times
its uniform share or more: then no region stands out, and the GUI, the report and the JSON say
so instead of listing "top" regions. :func:`relative_map` gives the map as weight / uniform
(1 = uniform), the scale the GUI and the report colour attention maps on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from ..modality import Modality
from .maps import BaseMap, ModalityMap, RoiMap, VolumeMap, WordMap, base_map, roi_map_from_tokens, volume_from_tokens, word_map

__all__ = [
    "BlockAttention",
    "Uniformity",
    "round_attention",
    "check_rows_sum_to_one",
    "map_token_scores",
    "uniformity",
    "relative_map",
    "NEAR_UNIFORM_ENTROPY",
    "NEAR_UNIFORM_MAX_RATIO",
    "NEAR_UNIFORM_RULE",
]

#: Tolerance of the "rows sum to 1" check (float32 softmax).
ROW_SUM_TOL = 1e-3

#: A map whose normalised entropy is at least this (and whose max / uniform ratio is below
#: :data:`NEAR_UNIFORM_MAX_RATIO`) is "near uniform": no region stands out. 0.98 is 2 % of the
#: entropy of the uniform distribution (the issue's fMRI maps measured 0.97-0.999).
NEAR_UNIFORM_ENTROPY = 0.98

#: ... and no key at or above this multiple of the uniform weight (one key at twice its share
#: among thousands barely moves the entropy, but it does stand out).
NEAR_UNIFORM_MAX_RATIO = 2.0

#: The near-uniform rule in words (for the GUI, the report and the JSON).
NEAR_UNIFORM_RULE = f"normalised entropy >= {NEAR_UNIFORM_ENTROPY} and max/uniform < {NEAR_UNIFORM_MAX_RATIO:g}"


@dataclass(frozen=True)
class Uniformity:
    """How far one attention distribution is from uniform over its valid keys.

    Attributes
    ----------
    n_keys : int
        Number of valid keys ``n``.
    entropy : float
        Normalised entropy ``H / log(n)`` (1 = uniform; 1.0 when ``n == 1``).
    max_ratio : float
        ``max(weight) * n``: the largest weight over the uniform weight ``1 / n``.
    min_ratio : float
        ``min(weight) * n``.
    near_uniform : bool
        ``entropy >= NEAR_UNIFORM_ENTROPY and max_ratio < NEAR_UNIFORM_MAX_RATIO``.
    """

    n_keys: int
    entropy: float
    max_ratio: float
    min_ratio: float
    near_uniform: bool

    @property
    def uniform(self) -> float:
        """The uniform weight ``1 / n``."""
        return 1.0 / max(self.n_keys, 1)

    def figures(self) -> str:
        """``"normalised entropy 0.993, max/uniform 1.21x over 512 keys"``."""
        return (f"normalised entropy {self.entropy:.3f}, max/uniform {self.max_ratio:.2f}x "
                f"over {self.n_keys} keys")

    def verdict(self) -> str:
        """What a reader should conclude: near uniform (no region stands out) or not."""
        if self.near_uniform:
            return f"near uniform (normalised entropy {self.entropy:.3f}): no region stands out"
        return (f"not uniform (normalised entropy {self.entropy:.3f}, max/uniform {self.max_ratio:.2f}x; "
                f"near-uniform margin: {NEAR_UNIFORM_RULE})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_valid_keys": self.n_keys, "normalised_entropy": self.entropy, "max_over_uniform": self.max_ratio,
            "min_over_uniform": self.min_ratio, "uniform_weight": self.uniform, "near_uniform": self.near_uniform,
            "margin": NEAR_UNIFORM_RULE,
        }


def uniformity(weights: Any, key_mask: Any = None) -> Uniformity:
    """:class:`Uniformity` of one attention distribution over its valid keys.

    ``weights`` (keys,) is renormalised over the valid keys (it sums to 1 there already, up to
    rounding); masked keys are ignored.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    mask = np.ones(w.shape, bool) if key_mask is None else np.asarray(key_mask, bool).reshape(-1)
    v = np.clip(w[mask], 0.0, None)
    n = int(v.size)
    if n == 0 or v.sum() <= 0:
        return Uniformity(n, float("nan"), float("nan"), float("nan"), False)
    p = v / v.sum()
    if n == 1:
        return Uniformity(1, 1.0, 1.0, 1.0, True)
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum() / np.log(n))
    max_ratio, min_ratio = float(p.max() * n), float(p.min() * n)
    near = entropy >= NEAR_UNIFORM_ENTROPY and max_ratio < NEAR_UNIFORM_MAX_RATIO
    return Uniformity(n, entropy, max_ratio, min_ratio, bool(near))


@dataclass
class BlockAttention:
    """One Q-former block's cross-attention for one subject.

    Attributes
    ----------
    block : str
        The auxiliary modality (``"smri"``...) or ``"cross"``.
    per_query : ndarray (N_q, keys)
        Mean over heads; every row sums to 1 over the valid keys.
    mean : ndarray (keys,)
        Mean over heads and queries (sums to 1).
    key_mask : ndarray (keys,) bool
        Valid keys.
    map : ModalityMap or None
        ``mean`` mapped to the input (``None`` for the cross block).
    shares : dict
        Cross block only: attention share of each auxiliary modality's block (sum of ``mean``
        over that block's ``N_q`` keys); missing blocks get 0.
    query_shares : ndarray (N_q, |M'|) or None
        Cross block only: the same per query.
    uniformity : Uniformity
        How far ``mean`` is from uniform over the valid keys (computed when not given).
    """

    block: str
    per_query: np.ndarray
    mean: np.ndarray
    key_mask: np.ndarray
    map: ModalityMap | None = None
    shares: dict[str, float] = field(default_factory=dict)
    query_shares: np.ndarray | None = None
    uniformity: Uniformity | None = None

    def __post_init__(self) -> None:
        if self.uniformity is None:
            self.uniformity = uniformity(self.mean, self.key_mask)

    @property
    def near_uniform(self) -> bool:
        """Whether the mean map is within the near-uniform margin (see :class:`Uniformity`)."""
        return bool(self.uniformity is not None and self.uniformity.near_uniform)


def check_rows_sum_to_one(weights: torch.Tensor, key_mask: torch.Tensor, tol: float = ROW_SUM_TOL) -> None:
    """Raise ``ValueError`` unless every ``(…, query, key)`` row sums to 1 and masked keys get 0.

    ``tol`` is widened to a few units of rounding of ``weights``'s dtype (bfloat16 / float16
    softmax rows sum to 1 only to about ``2 ** -8`` / ``2 ** -11``).
    """
    if weights.is_floating_point():
        tol = max(tol, 2 * float(torch.finfo(weights.dtype).eps))
    w = weights.detach().float()
    sums = w.sum(dim=-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=tol):
        raise ValueError(f"attention rows do not sum to 1 over keys (range {float(sums.min()):.4f}-{float(sums.max()):.4f})")
    masked = ~key_mask.bool()
    if masked.any() and key_mask.bool().any():
        leak = float(w[..., masked].abs().max())
        if leak > tol:
            raise ValueError(f"attention on masked keys: {leak:.4g}")


def map_token_scores(
    modality: Modality, scores: np.ndarray, model: Any, subject: Any, batch: Mapping[str, Any]
) -> ModalityMap:
    """Map one score per phase-1 token of ``modality`` back to the subject's input."""
    backbone = model.backbone(modality)
    if modality is Modality.SMRI:
        return volume_from_tokens(scores, backbone, subject.smri_geometry)
    if modality is Modality.FMRI:
        n_rois, n_patches = backbone.token_grid()
        return roi_map_from_tokens(scores, n_rois, n_patches, _atlas(subject))
    if modality is Modality.CLINICAL:
        if "token_offsets" not in batch:
            raise ValueError("the clinical tokenizer gives no character offsets (not a fast tokenizer)")
        return word_map(subject.clinical, batch["token_offsets"][0], scores)
    return base_map(subject.genetics, batch, scores)


def _atlas(subject: Any) -> str:
    info = getattr(subject, "fmri_info", None) or {}
    return str(info.get("atlas") or "schaefer400_17n")


def round_attention(
    round_output: Any,
    anchor: Modality,
    model: Any,
    subject: Any,
    features: Mapping[Modality, Mapping[str, Any]],
    aux_masks: "Mapping[Modality, torch.Tensor] | None" = None,
) -> dict[str, BlockAttention]:
    """Per-block attention of one anchor round (see the module docstring).

    Parameters
    ----------
    round_output : RoundOutput
        From ``model.anchored(..., return_attention=True)`` for a batch of one subject.
    anchor : Modality
    model : AnchorADModel
    subject : Subject
    features : mapping
        Modality -> collated batch of the subject (``Diagnosis.features``).
    aux_masks : mapping, optional
        Modality -> ``(1, N)`` token mask of the phase-1 features (default: all keys valid,
        except DNA tokens outside ``token_mask``).

    Returns
    -------
    dict
        Block name -> :class:`BlockAttention`, only for blocks whose modality is present (the
        cross block whenever any auxiliary modality is present).
    """
    qformer = model.rounds[anchor.value].qformer
    attention = round_output.attention or {}
    out: dict[str, BlockAttention] = {}
    aux_order = [m for m in qformer.aux_modalities]
    nq = qformer.num_queries
    for m in aux_order:
        weights = attention.get(m.value)
        if weights is None or m not in features:
            continue  # missing modality: its block is masked, no map
        w = weights[0].detach().cpu()  # (H, Q, N), in the model's dtype until checked
        if aux_masks is not None and m in aux_masks:
            mask = aux_masks[m][0].bool().cpu()
        elif "token_mask" in features[m]:
            mask = torch.as_tensor(features[m]["token_mask"][0]).bool().cpu()
        elif m is Modality.CLINICAL and "attention_mask" in features[m]:
            mask = torch.as_tensor(features[m]["attention_mask"][0]).bool().cpu()
        else:
            mask = torch.ones(w.shape[-1], dtype=torch.bool)
        check_rows_sum_to_one(w, mask)
        w = w.float()
        per_query = w.mean(dim=0).numpy()
        mean = per_query.mean(axis=0)
        out[m.value] = BlockAttention(
            m.value, per_query, mean, mask.numpy(), map_token_scores(m, mean, model, subject, features[m])
        )
    weights = attention.get("cross")
    if weights is not None and out:
        w = weights[0].detach().cpu()  # (H, Q, |M'| * N_q)
        present = torch.tensor([m.value in out for m in aux_order], dtype=torch.bool)
        mask = present.repeat_interleave(nq)
        check_rows_sum_to_one(w, mask)
        w = w.float()
        per_query = w.mean(dim=0).numpy()
        mean = per_query.mean(axis=0)
        query_shares = per_query.reshape(per_query.shape[0], len(aux_order), nq).sum(axis=2)
        shares = {m.value: float(mean[i * nq:(i + 1) * nq].sum()) for i, m in enumerate(aux_order)}
        out["cross"] = BlockAttention("cross", per_query, mean, mask.numpy(), None, shares, query_shares)
    return out


def relative_map(block: BlockAttention) -> "ModalityMap | None":
    """``block.map`` as weight / uniform weight (1 = what a uniform distribution gives).

    Per display unit: an sMRI voxel carries its token's ratio; an fMRI ROI the mean ratio of
    its time-patch tokens (``roi_time`` per token); a word the mean ratio of its tokens (0 for a
    word past truncation); a DNA base (and k-mer) its token's ratio. ``None`` for the cross block.
    """
    import dataclasses

    mp = block.map
    u = block.uniformity
    if mp is None or u is None or not u.n_keys:
        return None
    n = float(u.n_keys)
    if isinstance(mp, VolumeMap):
        return dataclasses.replace(mp, data=(mp.data * n).astype(np.float32),
                                   cube=None if mp.cube is None else (mp.cube * n).astype(np.float32))
    if isinstance(mp, RoiMap):
        roi_time = np.asarray(mp.roi_time, float) * n
        return RoiMap(roi_time.mean(axis=1), roi_time, mp.atlas)
    if isinstance(mp, WordMap):
        words = [dataclasses.replace(w, score=(w.score * n / w.n_tokens) if w.n_tokens else 0.0) for w in mp.words]
        return WordMap(mp.note, words, mp.special * n)
    kmers = [dataclasses.replace(k, score=k.score * n) for k in mp.kmers]
    tracks = [np.zeros(len(t), dtype=np.float64) for t in mp.tracks]
    for k in kmers:
        if 0 <= k.sequence < len(tracks):
            tracks[k.sequence][k.start:k.end] = k.score
    return BaseMap(tracks, kmers, mp.special * n)
