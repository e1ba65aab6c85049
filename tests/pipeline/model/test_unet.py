"""UNet: output shapes, the valid-padding shape relation, parameter counts and input checks."""

from __future__ import annotations

import pytest
import torch

from pipeline.model import UNet


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("kwargs", "input_shape", "output_shape"),
    [
        ({"ndim": 2, "depth": 2}, (1, 1, 64, 64), (1, 3, 64, 64)),
        ({"ndim": 2, "depth": 2, "padding": "valid"}, (2, 1, 92, 92), (2, 3, 52, 52)),
        ({"ndim": 3, "depth": 2}, (1, 1, 16, 32, 32), (1, 3, 16, 32, 32)),
        ({"ndim": 3, "depth": 2, "padding": "valid"}, (1, 1, 44, 44, 44), (1, 3, 4, 4, 4)),
        (
            {"ndim": 3, "depth": 3, "downsample_factors": [(1, 2, 2), (1, 2, 2), (2, 2, 2)]},
            (1, 1, 8, 32, 32),
            (1, 3, 8, 32, 32),
        ),
        (
            {"ndim": 3, "depth": 2, "downsample_factors": [(1, 2, 2), (2, 2, 2)], "padding": "valid"},
            (1, 1, 44, 92, 92),
            (1, 3, 20, 52, 52),
        ),
        ({"ndim": 2, "depth": 0, "out_channels": 1}, (1, 1, 7, 9), (1, 1, 7, 9)),
    ],
)
@pytest.mark.parametrize("norm", ["group", "batch", None])
def test_output_shapes(kwargs, input_shape, output_shape, norm):
    kwargs = {"out_channels": 3, **kwargs}
    net = UNet(1, base_features=4, norm=norm, **{k: v for k, v in kwargs.items()})
    out = net(torch.randn(input_shape))
    assert tuple(out.shape) == output_shape
    assert net.output_shape(input_shape[2:]) == output_shape[2:]


def test_valid_shape_relation_and_context():
    # Per axis: (s - 4) / f0 - 4 (bottom) then * f0 - 4: input = output + 2 * context, context constant.
    net = UNet(1, 1, ndim=3, depth=2, downsample_factors=[(1, 2, 2), (2, 2, 2)], padding="valid")
    assert net.context == (12, 20, 20)
    assert net.total_downsample_factor == (2, 4, 4)
    for shape in [(44, 92, 92), (46, 96, 100), (60, 132, 92)]:
        out = net.output_shape(shape)
        assert tuple(s - o for s, o in zip(shape, out, strict=True)) == tuple(2 * c for c in net.context)


def test_same_padding_context_equals_valid_context():
    kwargs = {"ndim": 3, "depth": 3, "downsample_factors": [(1, 2, 2), (1, 2, 2), (2, 2, 2)]}
    assert UNet(**kwargs).context == UNet(padding="valid", **kwargs).context


def test_valid_padding_blockwise_equals_whole_image():
    # Without normalization a valid U-Net is translation-equivariant for shifts that are multiples of the
    # total downsample factor: two overlapping blocks reproduce the whole output.
    torch.manual_seed(0)
    net = UNet(1, 2, ndim=2, depth=2, base_features=4, padding="valid", norm=None).eval()
    image = torch.randn(1, 1, 92 + 16, 92)
    with torch.no_grad():
        whole = net(image)
        top = net(image[:, :, :92])
        bottom = net(image[:, :, 16:])
    assert whole.shape[2:] == (68, 52)
    torch.testing.assert_close(whole[:, :, :52], top)
    torch.testing.assert_close(whole[:, :, 16:], bottom)


def test_same_padding_blockwise_equals_whole_image_beyond_the_context():
    # A same-padded U-Net without normalization reproduces whole-image outputs at least `context` voxels
    # away from a block's cut edges, when blocks start at multiples of the total downsample factor.
    torch.manual_seed(0)
    net = UNet(1, 1, ndim=2, depth=2, base_features=4, norm=None).eval()
    c = net.context[0]
    assert c == 4 + 8 + 8  # 2 convs of radius 1 per block, at scales 1 and 2 (down and up), 2 at scale 4
    image = torch.randn(1, 1, 96, 64)
    with torch.no_grad():
        whole = net(image)
        top = net(image[:, :, :64])
        bottom = net(image[:, :, 32:])
    torch.testing.assert_close(top[:, :, : 64 - c], whole[:, :, : 64 - c])
    torch.testing.assert_close(bottom[:, :, c:], whole[:, :, 32 + c :])
    assert not torch.allclose(top[:, :, 60:], whole[:, :, 60:64])  # border effects do reach inside


def test_parameter_count_by_hand():
    # 2-D, depth 1, base 2, no norm (convs have biases):
    # down 0: conv 1->2 (18 + 2), conv 2->2 (36 + 2); bottom: conv 2->4 (72 + 4), conv 4->4 (144 + 4);
    # upsample 4->2, kernel 2x2 (32 + 2); up 0: conv 4->2 (72 + 2), conv 2->2 (36 + 2); head 2->1 (2 + 1).
    net = UNet(1, 1, ndim=2, depth=1, base_features=2, norm=None)
    assert n_params(net) == 20 + 38 + 76 + 148 + 34 + 74 + 38 + 3 == 431


def test_parameter_counts_scale_sensibly():
    small = n_params(UNet(1, 3, ndim=3, depth=3, base_features=8))
    default = n_params(UNet(1, 3, ndim=3, depth=3, base_features=16))
    assert 3.5 < default / small < 4.1  # convolutions dominate: features squared
    assert 1_000_000 < default < 2_000_000  # 16-32-64-128 features, 3x3x3 kernels
    assert n_params(UNet(1, 3, ndim=2, depth=3, base_features=16)) < default / 2.5  # 3x3 vs 3x3x3
    # norm layers add their affine parameters and drop the conv biases
    # (the six 3x3 convs lose their biases, 16 values; each GroupNorm adds a weight and a bias per channel)
    conv_biases = 2 + 2 + 4 + 4 + 2 + 2
    grouped = UNet(1, 1, ndim=2, depth=1, base_features=2, norm="group")
    assert n_params(grouped) == 431 - conv_biases + 2 * conv_biases


def test_feature_counts():
    assert UNet(depth=3, base_features=16).features == (16, 32, 64, 128)
    assert UNet(depth=2, base_features=12, feature_growth=1.5).features == (12, 18, 27)


def test_final_activation():
    x = torch.randn(1, 1, 16, 16)
    torch.manual_seed(0)
    logits = UNet(1, 3, ndim=2, depth=1, base_features=4)(x)
    torch.manual_seed(0)
    probs = UNet(1, 3, ndim=2, depth=1, base_features=4, final_activation="sigmoid")(x)
    torch.testing.assert_close(probs, torch.sigmoid(logits))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (
            (1, 1, 30, 64, 64),
            r"input spatial shape \(30, 64, 64\) \(z, y, x\) does not fit this U-Net .*along z, "
            r"at level 0 the size 30 is not divisible by the downsample factor 4.*the smallest valid "
            r"input shape at least as large is \(32, 64, 64\)",
        ),
        ((1, 1, 32, 64), r"input has ndim=4 \(shape \(1, 1, 32, 64\)\); expected \(B, C, Z, Y, X\)"),
        ((1, 2, 32, 64, 64), "input has 2 channels .* expects in_channels=1"),
    ],
)
def test_bad_input_shape_errors(shape, message):
    net = UNet(1, 3, ndim=3, depth=1, base_features=2, downsample_factors=[4])
    with pytest.raises(ValueError, match=message):
        net(torch.zeros(shape))


def test_valid_padding_too_small_input():
    net = UNet(1, 1, ndim=2, depth=2, padding="valid", base_features=2)
    message = r"along y, at level 1 the size shrinks to -1.*at least as large is \(44, 44\)"
    with pytest.raises(ValueError, match=message):
        net.output_shape((10, 44))
    assert net.valid_input_shape((10, 44)) == (44, 44)
    assert net.output_shape((44, 44)) == (4, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ndim": 4}, "ndim=4; expected 2"),
        ({"depth": -1}, "depth=-1"),
        ({"depth": 2, "downsample_factors": [2]}, "downsample_factors has 1 entries but depth=2"),
        ({"depth": 1, "downsample_factors": [(1, 2)]}, r"downsample_factors\[0\]=\(1, 2\); expected a posit"),
        ({"padding": "full"}, "padding='full'"),
        ({"norm": "layer"}, "norm='layer'"),
        ({"base_features": 0}, "base_features=0"),
        ({"feature_growth": 0}, "feature_growth=0"),
        ({"final_activation": "relu"}, "final_activation='relu'"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNet(**kwargs)
