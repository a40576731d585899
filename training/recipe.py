"""The training recipe's settings and what both trainers share (the two-phase `training.train` and the cached
features of `training.head_only`): every flag with its default, how the model is compiled and how classes are
weighted. Kept apart from both trainers, so that neither imports the other to reach them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.model import BACKBONES, DEFAULT_BACKBONE


def _flag(flag: str, help: str, **argparse_options: Any) -> dict[str, Any]:
    """A field's command-line flag: its name, its help, and anything argparse needs beyond type and default."""
    return {"flag": flag, "help": help, **argparse_options}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. Each field is a flag of `python -m training.train` (its metadata names it), so every
    default is written here, once, and `--help` shows it."""

    data_dir: Path = field(metadata=_flag("--data", "a folder written by training.prepare_dataset", required=True))
    run_dir: Path = field(metadata=_flag("--run", "the run folder for the model and logs", required=True))
    backbone: str = field(default=DEFAULT_BACKBONE, metadata=_flag("--backbone", "", choices=sorted(BACKBONES)))
    weights: str | None = field(
        default="imagenet",
        metadata=_flag(
            "--weights",
            "backbone initialisation (Keras' EfficientNets download theirs on first use)",
            choices=["imagenet", "none"],
        ),
    )
    batch_size: int = field(default=32, metadata=_flag("--batch-size", "images per step, over all GPUs"))
    head_epochs: int = field(default=5, metadata=_flag("--head-epochs", "phase 1: the head on a frozen backbone"))
    fine_tune_epochs: int | None = field(
        default=None,
        metadata=_flag("--fine-tune-epochs", "phase 2: the top of the backbone too (10; 0 with --head-only)"),
    )
    head_learning_rate: float = field(default=1e-3, metadata=_flag("--head-lr", "phase 1 learning rate (Adam)"))
    fine_tune_learning_rate: float = field(
        default=1e-4, metadata=_flag("--fine-tune-lr", "phase 2 learning rate (Adam)")
    )
    fine_tune_fraction: float = field(
        default=0.2,
        metadata=_flag(
            "--fine-tune-fraction",
            "share of the backbone's layers (from the top) unfrozen in phase 2; BatchNorm stays frozen",
        ),
    )
    dropout: float = field(default=0.3, metadata=_flag("--dropout", "dropout before the output layer"))
    label_smoothing: float = field(default=0.1, metadata=_flag("--label-smoothing", "label smoothing of the loss"))
    class_weights: bool = field(default=False, metadata=_flag("--class-weights", "weight classes by inverse frequency"))
    patience: int = field(default=3, metadata=_flag("--patience", "early stopping patience, in epochs"))
    cache: str = field(
        default="disk",
        metadata=_flag(
            "--cache",
            "where tf.data caches decoded images (disk: a file in the run folder)",
            choices=["disk", "memory", "none"],
        ),
    )
    max_steps_per_epoch: int | None = field(
        default=None, metadata=_flag("--max-steps-per-epoch", "cap the steps per epoch (smoke runs)")
    )
    seed: int = field(default=42, metadata=_flag("--seed", "seed of weights, shuffling and augmentation"))
    head_only: bool = field(
        default=False,
        metadata=_flag(
            "--head-only",
            "train only the head, on backbone features computed once and cached in the run folder (CPU recipe)",
        ),
    )
    hidden_units: int = field(
        default=256, metadata=_flag("--hidden-units", "the head's hidden ReLU layer; 0 for a linear head")
    )
    cat_gate: bool = field(
        default=False,
        metadata=_flag(
            "--cat-gate",
            "decide 'No cat' from ImageNet's cat classes, fitted on the training split, and train the head on the "
            "breeds alone (efficientnet-lite backbones; see training/cat_gate.py)",
        ),
    )
    origin_weights: str | None = field(
        default=None,
        metadata=_flag(
            "--origin-weights",
            "with --head-only: weights of the photos of some origins (a dataset's name) in the loss and early "
            "stopping, as ORIGIN=WEIGHT[,ORIGIN=WEIGHT]; e.g. cat-breeds-12=5 for a set with cleaner labels",
        ),
    )
    flip_features: bool = field(
        default=True,
        metadata=_flag("--no-flip-features", "with --head-only: do not add the mirror images' features"),
    )
    min_breed_probability: float | None = field(
        default=None,
        metadata=_flag(
            "--min-breed-probability",
            "the breed rule written into the sidecar: a cat's breed is identified when its calibrated P(breed | cat) "
            "is at least this (docs/model.md says how it was chosen); none: no rule, breed_identified is null",
        ),
    )
    model_name: str | None = field(
        default=None, metadata=_flag("--name", "the model's name in its sidecar (default <backbone>-cat-breeds)")
    )
    model_version: str | None = field(
        default=None, metadata=_flag("--version", "the model's version in its sidecar (default the run's UTC time)")
    )

    def __post_init__(self) -> None:
        if self.fine_tune_epochs is None:
            object.__setattr__(self, "fine_tune_epochs", 0 if self.head_only else 10)
        if self.weights == "none":
            object.__setattr__(self, "weights", None)
        checks = [
            (self.backbone in BACKBONES, f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}"),
            (self.weights in ("imagenet", None), "--weights must be imagenet or none"),
            (0 <= self.fine_tune_fraction <= 1, "--fine-tune-fraction must be between 0 and 1"),
            (self.head_epochs >= 1, "--head-epochs must be at least 1"),
            ((self.fine_tune_epochs or 0) >= 0, "--fine-tune-epochs must be at least 0"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.head_learning_rate > 0 and self.fine_tune_learning_rate > 0, "learning rates must be above 0"),
            (0 <= self.dropout < 1, "--dropout must be at least 0 and below 1"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be at least 0 and below 1"),
            (self.patience >= 1, "--patience must be at least 1 epoch"),
            (self.cache in ("disk", "memory", "none"), "--cache must be disk, memory or none"),
            (self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1, "--max-steps-per-epoch must be >= 1"),
            (self.hidden_units >= 0, "--hidden-units must be 0 (a linear head) or more"),
            (
                self.min_breed_probability is None or 0 <= self.min_breed_probability <= 1,
                "--min-breed-probability must be from 0 to 1",
            ),
            (
                not (self.head_only and self.fine_tune_epochs),
                "--head-only trains on cached features and cannot fine-tune: --fine-tune-epochs must be 0",
            ),
            (
                not self.cat_gate or self.backbone.startswith("efficientnet-lite"),
                "--cat-gate needs an efficientnet-lite backbone (it reads ImageNet's classifier)",
            ),
        ]
        for holds, message in checks:
            if not holds:
                raise ValueError(message)
        if self.origin_weights and not self.head_only:
            raise ValueError("--origin-weights works with --head-only (the two-phase recipe does not weight photos)")
        self.origin_weight_map()  # raises on a malformed value

    def origin_weight_map(self) -> dict[str, float]:
        """`--origin-weights` as {origin: weight}.

        Raises:
            ValueError: not ORIGIN=WEIGHT pairs, or a weight that is not above 0.
        """
        weights = {}
        for pair in filter(None, (self.origin_weights or "").split(",")):
            origin, _, value = pair.partition("=")
            try:
                weights[origin.strip()] = float(value)
            except ValueError:
                raise ValueError(f"--origin-weights: {pair!r} is not ORIGIN=WEIGHT") from None
            if not origin.strip() or not weights[origin.strip()] > 0:
                raise ValueError(f"--origin-weights: {pair!r} needs an origin and a weight above 0")
        return weights


def compile_model(model: Any, learning_rate: float, config: TrainConfig) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"),
        ],
    )


def class_weight_map(counts: Any) -> dict[int, float]:
    """Inverse-frequency weights from the training images per class, 1.0 on average."""
    return {i: float(counts.sum() / (len(counts) * max(c, 1))) for i, c in enumerate(counts)}
