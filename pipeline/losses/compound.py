"""Weighted sums of losses: ``w_BCE · BCE + w_Dice · Dice + w_eval · topology term``.

The weights of :data:`LOSS_WEIGHTS` are those of Table 1 of the AIS continuity paper (Szustakowski et
al.): baseline BCE 1 + Dice 1; clDice 1/1/3; Negative Centerline 1/1/3; Simplified Topology 1/1/0.8.

The supervoxel paper does not combine its loss with Dice; ``"supervoxel"`` here is BCE 1 + Dice 1 +
1 · ``SupervoxelLoss(alpha=1, beta=0.5)`` (critical terms only, volume-normalized). With that weight a
critical voxel's BCE counts 1 + 0.5 = 1.5 times an ordinary voxel's, exactly the ratio of Definition 1
with the paper's α = β = 0.5 (``0.5·L0 + 0.5·(0.5·P + 0.5·N) ∝ L0 + 0.5·P + 0.5·N``), while the voxel
term gains the Dice that the other runs of Table 1 have, so the five runs differ only in their
topology term. On affinity logits (B, 3, Z, Y, X) the same builder works: every channel is a binary
image and ``SupervoxelLoss`` averages over channels, i.e. Definition 4 divided by the channel count, so
that a critical edge again weighs 1.5 ordinary edges against the mean BCE
(:class:`~pipeline.losses.AffinitySupervoxelLoss` is the literal, channel-summed Definition 4).

``"affinity_supervoxel"`` is the same for (B, 3, Z, Y, X) or (B, 2, Y, X) nearest-neighbour affinity
logits with instance-level critical edges: BCE 1 + Dice 1 + 1 · ``AffinityInstanceLoss(alpha=1,
beta=0.5)``, whose critical edges are found on the segments decoded from the affinities (splits and
merges of objects, touching ones included) rather than on each channel as a binary image (see
:mod:`pipeline.losses.affinity_supervoxel`). It refuses inputs whose channel count is not the spatial
ndim.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pipeline.losses._validation import check_logits_target
from pipeline.losses.affinity_supervoxel import AffinityInstanceLoss
from pipeline.losses.centerline import NegativeCenterlineLoss
from pipeline.losses.cldice import ClDiceLoss
from pipeline.losses.simplified_topology import SimplifiedTopologyLoss
from pipeline.losses.supervoxel import SupervoxelLoss
from pipeline.losses.voxelwise import BCELoss, SoftDiceLoss

__all__ = ["LOSS_KINDS", "LOSS_WEIGHTS", "CompoundLoss", "compound_loss"]

#: (w_BCE, w_Dice, w_eval) per kind: AIS paper Table 1, and the supervoxel choice of the module docstring.
LOSS_WEIGHTS: Mapping[str, tuple[float, float, float]] = {
    "bce_dice": (1.0, 1.0, 0.0),
    "cldice": (1.0, 1.0, 3.0),
    "negative_centerline": (1.0, 1.0, 3.0),
    "simplified_topology": (1.0, 1.0, 4.0 / 5.0),
    "supervoxel": (1.0, 1.0, 1.0),
    "affinity_supervoxel": (1.0, 1.0, 1.0),
}

#: The accepted ``kind`` names of :func:`compound_loss`.
LOSS_KINDS: tuple[str, ...] = tuple(LOSS_WEIGHTS)

_TOPOLOGY_TERMS: Mapping[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "cldice": (ClDiceLoss, {}),
    "negative_centerline": (NegativeCenterlineLoss, {}),
    "simplified_topology": (SimplifiedTopologyLoss, {}),
    "supervoxel": (SupervoxelLoss, {"alpha": 1.0, "beta": 0.5}),
    "affinity_supervoxel": (AffinityInstanceLoss, {"alpha": 1.0, "beta": 0.5}),
}


class CompoundLoss(nn.Module):
    """A weighted sum of ``loss(logits, target)`` modules.

    Parameters
    ----------
    terms : mapping of str to (float, nn.Module)
        Name → (weight, loss module). Terms with weight 0 are kept (for logging) but not evaluated by
        :meth:`forward`.

    Examples
    --------
    >>> from pipeline.losses import BCELoss, ClDiceLoss
    >>> loss = CompoundLoss({"bce": (1.0, BCELoss()), "cldice": (3.0, ClDiceLoss())})
    >>> logits, target = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    >>> sorted(loss.terms(logits, target))
    ['bce', 'cldice']
    """

    def __init__(self, terms: Mapping[str, tuple[float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("terms is empty; expected at least one (weight, loss) pair")
        weights: dict[str, float] = {}
        modules: dict[str, nn.Module] = {}
        for name, pair in terms.items():
            if not isinstance(pair, tuple) or len(pair) != 2 or not isinstance(pair[1], nn.Module):
                raise TypeError(f"terms[{name!r}] must be a (weight, nn.Module) pair; got {pair!r}")
            weight = float(pair[0])
            if not (weight >= 0.0 and weight < float("inf")):
                raise ValueError(f"terms[{name!r}] has weight {pair[0]!r}; expected a finite weight >= 0")
            weights[name] = weight
            modules[name] = pair[1]
        self.weights = weights
        self.losses = nn.ModuleDict(modules)

    def terms(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term's unweighted value, by name (for logging); weight-0 terms included."""
        check_logits_target(logits, target)
        return {name: loss(logits, target) for name, loss in self.losses.items()}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_logits_target(logits, target)
        total: torch.Tensor | None = None
        for name, loss in self.losses.items():
            weight = self.weights[name]
            if weight == 0.0:
                continue
            value = weight * loss(logits, target)
            total = value if total is None else total + value
        if total is None:
            return logits.sum() * 0.0
        return total

    def extra_repr(self) -> str:
        return "weights=" + ", ".join(f"{k}: {v:g}" for k, v in self.weights.items())


def compound_loss(
    kind: str,
    *,
    weights: tuple[float, float, float] | None = None,
    smooth: float = 1.0,
    **options: Any,
) -> CompoundLoss:
    """Build the BCE + Dice (+ topology term) loss of one run of the AIS paper's Table 1.

    Parameters
    ----------
    kind : str
        Which topology term to add, one of :data:`LOSS_KINDS`: ``"bce_dice"`` (none), ``"cldice"``,
        ``"negative_centerline"``, ``"simplified_topology"``, ``"supervoxel"`` or
        ``"affinity_supervoxel"`` (affinity logits only, C = spatial ndim).
    weights : (float, float, float), optional
        (w_BCE, w_Dice, w_eval); defaults to :data:`LOSS_WEIGHTS` ``[kind]``.
    smooth : float
        Smoothing term of the soft Dice.
    **options
        Keyword arguments of the topology term's constructor, e.g. ``iterations=5`` for ``"cldice"`` or
        ``connectivity=6`` for ``"supervoxel"`` (whose defaults here, as for ``"affinity_supervoxel"``, are
        ``alpha=1, beta=0.5``).

    Returns
    -------
    CompoundLoss
        Terms ``"bce"``, ``"dice"`` and, except for ``"bce_dice"``, a term named ``kind``.

    Raises
    ------
    ValueError
        For an unknown ``kind``, options given to ``"bce_dice"``, or weights that are not three numbers.

    Examples
    --------
    >>> loss = compound_loss("simplified_topology")
    >>> loss.weights
    {'bce': 1.0, 'dice': 1.0, 'simplified_topology': 0.8}
    """
    if kind not in LOSS_WEIGHTS:
        raise ValueError(f"kind={kind!r} is not a known loss; expected one of {', '.join(LOSS_KINDS)}")
    if weights is None:
        weights = LOSS_WEIGHTS[kind]
    if len(weights) != 3:
        raise ValueError(f"weights={weights!r}; expected three numbers (w_BCE, w_Dice, w_eval)")
    w_bce, w_dice, w_eval = (float(w) for w in weights)
    terms: dict[str, tuple[float, nn.Module]] = {
        "bce": (w_bce, BCELoss()),
        "dice": (w_dice, SoftDiceLoss(smooth=smooth)),
    }
    if kind == "bce_dice":
        if options:
            raise ValueError(f"kind='bce_dice' takes no topology options; got {sorted(options)}")
        return CompoundLoss(terms)
    cls, defaults = _TOPOLOGY_TERMS[kind]
    terms[kind] = (w_eval, cls(**{**defaults, **options}))
    return CompoundLoss(terms)
