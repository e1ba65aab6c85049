"""A configurable 2-D/3-D U-Net that outputs logits (affinities or foreground).

Each level has a block of two 3×3(×3) convolutions (each followed by the normalization, if any, and a
ReLU); levels are joined by max-pooling on the way down and by transposed convolutions (kernel = stride =
the downsample factor) on the way up, with the skip connection cropped to the upsampled size and
concatenated. A final 1×1(×1) convolution maps to ``out_channels``. Axis order is (z, y, x) in 3-D and
(y, x) in 2-D.

With ``padding="valid"`` every convolution shrinks its input, so the output is smaller than the input by
``2 · context`` voxels per axis: :meth:`UNet.output_shape` and :attr:`UNet.context` give the relation that
block-wise inference needs (read a block grown by ``context`` on each side, write the output block).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

__all__ = ["UNet", "center_crop"]

Padding = Literal["same", "valid"]
Norm = Literal["group", "batch"] | None

_KERNEL = 3  # convolution size along every axis
_CONVS_PER_BLOCK = 2
_SHRINK = _CONVS_PER_BLOCK * (_KERNEL - 1)  # voxels lost per block and axis with valid padding


def _group_count(channels: int) -> int:
    """Largest divisor of ``channels`` that is <= 8 and leaves >= 4 channels per group (else 1)."""
    for groups in range(8, 0, -1):
        if channels % groups == 0 and channels // groups >= 4:
            return groups
    return 1


class _ConvBlock(nn.Sequential):
    def __init__(self, ndim: int, in_channels: int, out_channels: int, padding: Padding, norm: Norm) -> None:
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        layers: list[nn.Module] = []
        for i in range(_CONVS_PER_BLOCK):
            layers.append(
                conv(
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    kernel_size=_KERNEL,
                    padding=_KERNEL // 2 if padding == "same" else 0,
                    bias=norm is None,
                )
            )
            if norm == "group":
                layers.append(nn.GroupNorm(_group_count(out_channels), out_channels))
            elif norm == "batch":
                layers.append(nn.BatchNorm2d(out_channels) if ndim == 2 else nn.BatchNorm3d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def center_crop(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The centred part of (B, C, *spatial) ``x`` with spatial shape ``shape`` (odd extra voxels: the end)."""
    slices = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], shape, strict=True):
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return x[tuple(slices)]


class UNet(nn.Module):
    """U-Net for 2-D (B, C, Y, X) or 3-D (B, C, Z, Y, X) inputs; returns logits unless told otherwise.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for a single light-sheet channel).
    out_channels : int
        Output channels: 3 for (z, y, x) affinities, 1 for binary foreground.
    ndim : {2, 3}
        Number of spatial dimensions.
    depth : int
        Number of downsampling steps (levels below the top), >= 0.
    base_features : int
        Feature maps of the top level; level ``l`` has ``round(base_features · feature_growth ** l)``.
    feature_growth : float
        Factor between the feature counts of consecutive levels, > 0.
    downsample_factors : sequence, optional
        ``depth`` factors, each an int or an ``ndim``-tuple, e.g. ``[(1, 2, 2), (1, 2, 2), (2, 2, 2)]``
        for z-coarse light-sheet data. Default: 2 along every axis at every level.
    padding : {"same", "valid"}
        ``"same"``: output shape = input shape, which must be divisible by the product of the factors.
        ``"valid"``: no padding; the output is smaller (see :meth:`output_shape`) and free of border
        artefacts, so block-wise inference matches whole-volume inference.
    norm : {"group", "batch", None}
        Normalization after each convolution. GroupNorm and BatchNorm in training mode use statistics
        of the whole input block, so with them block-wise outputs differ slightly from whole-volume ones;
        use ``None`` (or BatchNorm in eval mode) where that must not happen.
    final_activation : {None, "sigmoid", "softmax"}
        Applied to the output; None (default) returns logits, which is what every loss in
        :mod:`pipeline.losses` expects.

    Raises
    ------
    ValueError
        For an invalid value of any parameter.

    Examples
    --------
    >>> net = UNet(1, 3, ndim=3, depth=2, base_features=4, downsample_factors=[(1, 2, 2), (2, 2, 2)],
    ...            padding="valid")
    >>> net.output_shape((44, 92, 92))
    (20, 52, 52)
    >>> net.context
    (12, 20, 20)
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        *,
        ndim: int = 3,
        depth: int = 3,
        base_features: int = 16,
        feature_growth: float = 2,
        downsample_factors: Sequence[int | Sequence[int]] | None = None,
        padding: Padding = "same",
        norm: Norm = "group",
        final_activation: Literal["sigmoid", "softmax"] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("base_features", base_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; expected a positive integer")
        if ndim not in (2, 3) or isinstance(ndim, bool):
            raise ValueError(f"ndim={ndim!r}; expected 2 (y, x) or 3 (z, y, x)")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth={depth!r}; expected a non-negative integer")
        if not (isinstance(feature_growth, int | float) and 0 < feature_growth < math.inf):
            raise ValueError(f"feature_growth={feature_growth!r}; expected a positive number")
        if padding not in ("same", "valid"):
            raise ValueError(f"padding={padding!r}; expected 'same' or 'valid'")
        if norm not in ("group", "batch", None):
            raise ValueError(f"norm={norm!r}; expected 'group', 'batch' or None")
        if final_activation not in (None, "sigmoid", "softmax"):
            raise ValueError(f"final_activation={final_activation!r}; expected None, 'sigmoid' or 'softmax'")

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.ndim = ndim
        self.depth = depth
        self.padding: Padding = padding
        self.downsample_factors = self._check_factors(downsample_factors, depth, ndim)
        self.features = tuple(
            max(1, int(round(base_features * feature_growth**level))) for level in range(depth + 1)
        )

        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        pool = nn.MaxPool2d if ndim == 2 else nn.MaxPool3d
        up = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
        f = self.features
        self.down = nn.ModuleList(
            _ConvBlock(ndim, in_channels if level == 0 else f[level - 1], f[level], padding, norm)
            for level in range(depth + 1)
        )
        self.pool = nn.ModuleList(pool(kernel_size=k, stride=k) for k in self.downsample_factors)
        self.upsample = nn.ModuleList(
            up(f[level + 1], f[level], kernel_size=k, stride=k)
            for level, k in enumerate(self.downsample_factors)
        )
        self.up = nn.ModuleList(
            _ConvBlock(ndim, 2 * f[level], f[level], padding, norm) for level in range(depth)
        )
        self.head = conv(f[0], out_channels, kernel_size=1)
        self.final_activation = final_activation

    @staticmethod
    def _check_factors(
        factors: Sequence[int | Sequence[int]] | None, depth: int, ndim: int
    ) -> tuple[tuple[int, ...], ...]:
        if factors is None:
            return tuple((2,) * ndim for _ in range(depth))
        factors = list(factors)
        if len(factors) != depth:
            raise ValueError(
                f"downsample_factors has {len(factors)} entries but depth={depth}; give one factor per level"
            )
        out = []
        for level, factor in enumerate(factors):
            entry = (factor,) * ndim if isinstance(factor, int) else tuple(factor)
            if len(entry) != ndim or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in entry
            ):
                raise ValueError(
                    f"downsample_factors[{level}]={factor!r}; expected a positive int or {ndim} positive ints"
                )
            out.append(entry)
        return tuple(out)

    # ---------------------------------------------------------------------------------------------
    # Shape arithmetic

    def _axis_output(self, size: int, axis: int) -> tuple[int | None, str]:
        """Output size along ``axis`` for input ``size``, or (None, reason)."""
        shrink = _SHRINK if self.padding == "valid" else 0
        s = size
        for level, factors in enumerate(self.downsample_factors):
            s -= shrink
            if s < 1:
                return None, f"at level {level} the size shrinks to {s}"
            if s % factors[axis]:
                return None, (
                    f"at level {level} the size {s} is not divisible by the downsample factor {factors[axis]}"
                )
            s //= factors[axis]
        s -= shrink
        if s < 1:
            return None, f"at the bottom level the size shrinks to {s}"
        for level in reversed(range(self.depth)):
            s = s * self.downsample_factors[level][axis] - shrink
            if s < 1:
                return None, f"on the way up at level {level} the size shrinks to {s}"
        return s, ""

    def valid_input_shape(self, min_shape: Sequence[int]) -> tuple[int, ...]:
        """The smallest input shape, axis by axis at least ``min_shape``, that this network accepts."""
        shape = self._check_shape(min_shape)
        out = []
        for axis, size in enumerate(shape):
            s = max(size, 1)
            while self._axis_output(s, axis)[0] is None:
                s += 1
            out.append(s)
        return tuple(out)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for a spatial ``input_shape`` ((z, y, x) or (y, x)).

        Raises
        ------
        ValueError
            If the input shape cannot pass through the network (too small, or a level's size is not
            divisible by its downsample factor); the message names the axis and the next valid shape.
        """
        shape = self._check_shape(input_shape)
        out = []
        axes = "zyx"[3 - self.ndim :]
        for axis, size in enumerate(shape):
            result, reason = self._axis_output(size, axis)
            if result is None:
                raise ValueError(
                    f"input spatial shape {shape} ({', '.join(axes)}) does not fit this U-Net "
                    f"(padding={self.padding!r}, downsample_factors={list(self.downsample_factors)}): "
                    f"along {axes[axis]}, {reason}; the smallest valid input shape at least as large is "
                    f"{self.valid_input_shape(shape)}"
                )
            out.append(result)
        return tuple(out)

    @property
    def context(self) -> tuple[int, ...]:
        """Voxels per side, per axis, that a valid-padded network consumes: ``input = output + 2·context``.

        Block-wise inference reads each output block grown by ``context`` on every side. The value is the
        same for ``padding="same"``: there it is how far border effects reach into a block, and whole-volume
        results are reproduced by reading that halo, cropping it, and placing blocks at offsets that are
        multiples of :attr:`total_downsample_factor`.
        """
        out = []
        for axis in range(self.ndim):
            scale = 1
            total = 0
            for factors in self.downsample_factors:
                total += 2 * _SHRINK * scale  # down block and up block of this level
                scale *= factors[axis]
            total += _SHRINK * scale  # bottom block
            out.append(total // 2)
        return tuple(out)

    @property
    def total_downsample_factor(self) -> tuple[int, ...]:
        """Product of the downsample factors per axis."""
        return tuple(math.prod(f[axis] for f in self.downsample_factors) for axis in range(self.ndim))

    def _check_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in shape)
        if len(shape) != self.ndim:
            raise ValueError(
                f"spatial shape {shape} has {len(shape)} axes; this U-Net is {self.ndim}-D"
            )
        return shape

    # ---------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, in_channels, *spatial) to (B, out_channels, *output_shape(spatial)).

        Raises
        ------
        ValueError
            If ``x`` has the wrong ndim or channel count, or a spatial shape the network cannot take.
        """
        if x.ndim != self.ndim + 2:
            want = "(B, C, Y, X)" if self.ndim == 2 else "(B, C, Z, Y, X)"
            raise ValueError(f"input has ndim={x.ndim} (shape {tuple(x.shape)}); expected {want}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"input has {x.shape[1]} channels (shape {tuple(x.shape)}); this U-Net expects "
                f"in_channels={self.in_channels}"
            )
        self.output_shape(x.shape[2:])
        skips = []
        for level in range(self.depth):
            x = self.down[level](x)
            skips.append(x)
            x = self.pool[level](x)
        x = self.down[self.depth](x)
        for level in reversed(range(self.depth)):
            x = self.upsample[level](x)
            x = self.up[level](torch.cat([center_crop(skips[level], x.shape[2:]), x], dim=1))
        x = self.head(x)
        if self.final_activation == "sigmoid":
            x = torch.sigmoid(x)
        elif self.final_activation == "softmax":
            x = torch.softmax(x, dim=1)
        return x
