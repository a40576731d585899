"""The model contract: a `.tflite` file plus a JSON sidecar beside it (`model.tflite` -> `model.json`).

The sidecar is the single source of the labels (never a hand-kept list in the code) and of the input
specification that preprocessing must honour. The converter writes it with `write_sidecar`; the runtime reads
it with `load_sidecar` and checks it against the interpreter's tensors before serving anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SIDECAR_FORMAT_VERSION = 1
NO_CAT_LABEL = "No cat"  # the class of photos without a cat, spelled as in breeds.txt
SUPPORTED_INPUT_DTYPES = ("float32", "uint8", "int8")


class ModelContractError(ValueError):
    """The model file or its sidecar is missing, malformed or inconsistent. Raised at load time, never per request."""


@dataclass(frozen=True)
class InputSpec:
    """What the model's input tensor expects.

    EfficientNet models normalise inside the graph, so they take raw RGB in [0, 255]; `value_range` records that
    so a model that expects [0, 1] or [-1, 1] is served correctly too.
    """

    height_px: int
    width_px: int
    channels: int = 3
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 255.0)
    color: str = "RGB"


@dataclass(frozen=True)
class BreedRule:
    """When a cat's breed counts as identified: its most likely breed's probability among the breeds, P(breed |
    cat), is at least `min_probability`. The model's probabilities are temperature-scaled (calibrated) before
    the rule reads them; `training.recipe_search` and docs/model.md say how the threshold was chosen."""

    min_probability: float

    def identifies(self, breed_probability_given_cat: float) -> bool:
        return breed_probability_given_cat >= self.min_probability


COAT_LENGTHS = ("hairless", "short", "medium", "long")


@dataclass(frozen=True)
class CoatRule:
    """How a cat's coat length is read from the model's probabilities: the share of the breeds' probability on
    breeds of each length (breeds of several lengths, colour names and "No cat" count for none), by the breed
    standards' table (`training/coat_lengths.csv`, copied here at training). A length whose share is under
    `min_probability` (hairless, short, or medium and long together, as it is judged) is unclear.
    `training.coat_study` and docs/model.md say how the rule and its threshold were chosen."""

    label_lengths: tuple[str | None, ...]  # per label, in the model's output order
    min_probability: float

    def length_shares(self, probabilities: np.ndarray) -> np.ndarray:
        """P(length | cat) over COAT_LENGTHS."""
        mass = np.array(
            [
                sum(float(p) for p, length in zip(probabilities, self.label_lengths, strict=True) if length == name)
                for name in COAT_LENGTHS
            ]
        )
        total = mass.sum()
        return mass / total if total > 0 else mass

    def read(self, probabilities: np.ndarray) -> tuple[str | None, float]:
        """The coat's length (None: unclear) and its probability (the judged share: medium and long together)."""
        shares = self.length_shares(probabilities)
        length = COAT_LENGTHS[int(np.argmax(shares))]
        judged = shares[2:].sum() if length in ("medium", "long") else shares[COAT_LENGTHS.index(length)]
        return (length if judged >= self.min_probability else None), float(judged)


@dataclass(frozen=True)
class ModelCard:
    """The parsed sidecar."""

    name: str
    version: str
    labels: tuple[str, ...]
    input: InputSpec
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    breed_rule: BreedRule | None = None  # None: the model cannot tell an unclear breed (breed_identified is null)
    coat_rule: CoatRule | None = None  # None: the model says nothing of coats (coat is null)

    def to_json_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["labels"] = list(self.labels)
        body["input"]["value_range"] = list(self.input.value_range)
        if self.breed_rule is None:
            del body["breed_rule"]
        if self.coat_rule is None:
            del body["coat_rule"]
        else:
            body["coat_rule"] = {
                "lengths": dict(zip(self.labels, self.coat_rule.label_lengths, strict=True)),
                "min_probability": self.coat_rule.min_probability,
            }
        return {"format_version": SIDECAR_FORMAT_VERSION, **body}


def sidecar_path_for(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def write_sidecar(model_path: Path, card: ModelCard) -> Path:
    """Write the sidecar next to `model_path` and return its path."""
    path = sidecar_path_for(model_path)
    path.write_text(json.dumps(card.to_json_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_sidecar(model_path: Path) -> ModelCard:
    """Read and validate the sidecar of `model_path`.

    Raises:
        ModelContractError: the sidecar is missing, not JSON, or lacks or mistypes a field.
    """
    path = sidecar_path_for(model_path)
    if not path.is_file():
        raise ModelContractError(f"model sidecar {path} is missing: every .tflite model needs its .json beside it")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelContractError(f"model sidecar {path} is not valid JSON: {exc}") from None
    try:
        return _parse(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelContractError(f"model sidecar {path} is malformed: {exc}") from None


def _parse(raw: Any) -> ModelCard:
    if not isinstance(raw, dict):
        raise TypeError("top level must be an object")
    if raw.get("format_version") != SIDECAR_FORMAT_VERSION:
        raise ValueError(f"format_version must be {SIDECAR_FORMAT_VERSION}, got {raw.get('format_version')!r}")
    labels = raw["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise ValueError("'labels' must be a non-empty list of non-empty strings")
    if len(set(labels)) != len(labels):
        raise ValueError("'labels' must not repeat a label")
    spec = raw["input"]
    input_spec = InputSpec(
        height_px=_positive_int(spec, "height_px"),
        width_px=_positive_int(spec, "width_px"),
        channels=_positive_int(spec, "channels"),
        dtype=str(spec["dtype"]),
        value_range=(float(spec["value_range"][0]), float(spec["value_range"][1])),
        color=str(spec.get("color", "RGB")),
    )
    if input_spec.dtype not in SUPPORTED_INPUT_DTYPES:
        raise ValueError(f"input dtype {input_spec.dtype!r} is not one of {SUPPORTED_INPUT_DTYPES}")
    if input_spec.channels != 3 or input_spec.color != "RGB":
        raise ValueError("only 3-channel RGB inputs are supported")
    low, high = input_spec.value_range
    if not low < high:
        raise ValueError(f"input value_range {input_spec.value_range} must be increasing")
    for key in ("name", "version"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise ValueError(f"'{key}' must be a non-empty string")
    return ModelCard(
        breed_rule=_breed_rule(raw.get("breed_rule")),
        coat_rule=_coat_rule(raw.get("coat_rule"), labels),
        name=raw["name"],
        version=raw["version"],
        labels=tuple(labels),
        input=input_spec,
        provenance=dict(raw.get("provenance") or {}),
        metrics=dict(raw.get("metrics") or {}),
    )


def _breed_rule(raw: Any) -> BreedRule | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError("'breed_rule' must be an object")
    threshold = raw["min_probability"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise ValueError(f"'breed_rule.min_probability' must be a number from 0 to 1, got {threshold!r}")
    return BreedRule(min_probability=float(threshold))


def _coat_rule(raw: Any, labels: list[str]) -> CoatRule | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("lengths"), dict):
        raise TypeError("'coat_rule' must be an object with 'lengths' by label")
    lengths = raw["lengths"]
    if set(lengths) != set(labels):
        raise ValueError("'coat_rule.lengths' must name every label, and only those")
    for label, length in lengths.items():
        if length is not None and length not in COAT_LENGTHS:
            raise ValueError(f"'coat_rule.lengths' of {label!r} must be one of {COAT_LENGTHS} or null")
    threshold = raw["min_probability"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise ValueError(f"'coat_rule.min_probability' must be a number from 0 to 1, got {threshold!r}")
    return CoatRule(tuple(lengths[label] for label in labels), float(threshold))


def _positive_int(spec: dict[str, Any], key: str) -> int:
    value = spec[key]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"input '{key}' must be a positive integer, got {value!r}")
    return value
