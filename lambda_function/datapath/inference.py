"""LiteRT inference: load a model and its sidecar once, check that they agree, and classify pixels.

The interpreter is built once per process (at Lambda init) and reused. A LiteRT interpreter is not safe to
call from several threads at once, so `classify` holds a lock around set-tensor/invoke/get-tensor; Lambda
sends one request at a time to a container anyway, and the local server stays correct under concurrency.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from lambda_function.datapath.model_contract import NO_CAT_LABEL, ModelCard, ModelContractError, load_sidecar


@dataclass(frozen=True)
class Prediction:
    breed: str
    probability: float


@dataclass(frozen=True)
class Coat:
    length: str | None  # one of COAT_LENGTHS; None: unclear
    probability: float  # the length's probability (medium and long together, as lengths are judged)


# How shelters name a cat of no clear breed (Petfinder's own classes, in breeds.txt), by its coat; a hairless one
# "in the same spirit", and one whose coat is unclear too, as no more than a domestic cat.
DOMESTIC_NAMES = {
    "short": "Domestic Short Hair",
    "medium": "Domestic Medium Hair",
    "long": "Domestic Long Hair",
    "hairless": "Domestic Hairless",
}
UNCLEAR_DOMESTIC_NAME = "Domestic cat"


@dataclass(frozen=True)
class Answer:
    """What the model says of one image."""

    predictions: list[Prediction]  # the top k labels, most likely first: the closest breeds even when unsure
    cat_detected: bool | None  # None: the model has no "No cat" class and cannot tell
    breed_identified: bool | None  # None: no cat detected, or the model has no breed rule
    coat: Coat | None = None  # None: no cat detected, or the model has no coat rule
    description: str | None = None  # how a person would name the cat (`describe`); None: no cat detected


def describe(top_breed: str, breed_identified: bool | None, coat: Coat | None) -> str:
    """The cat's name as a shelter would write it: its breed when the breed is identified, otherwise the domestic
    name of its coat ("Domestic Short Hair"), or "Domestic cat" when the coat is unclear too."""
    if breed_identified:
        return top_breed
    if coat is None or coat.length is None:
        return UNCLEAR_DOMESTIC_NAME
    return DOMESTIC_NAMES[coat.length]


def coat_of(probabilities: np.ndarray, card: ModelCard) -> Coat | None:
    """The sidecar's coat rule on the label probabilities; None when "No cat" is the top answer or there is no
    rule."""
    rule = card.coat_rule
    if rule is None or card.labels[int(np.argmax(probabilities))] == NO_CAT_LABEL:
        return None
    length, probability = rule.read(probabilities)
    return Coat(length, probability)


def breed_identified(probabilities: np.ndarray, card: ModelCard) -> bool | None:
    """The sidecar's breed rule on the most likely breed's share of the breeds' probability, P(breed | cat).

    None when "No cat" is the top answer, and for a model without a rule.
    """
    rule = card.breed_rule
    if rule is None or card.labels[int(np.argmax(probabilities))] == NO_CAT_LABEL:
        return None
    breeds = np.array([label != NO_CAT_LABEL for label in card.labels])
    breed_mass = float(probabilities[breeds].sum())
    if breed_mass <= 0:
        return False
    return rule.identifies(float(probabilities[breeds].max()) / breed_mass)


class Classifier:
    """A LiteRT model with its model card, ready to classify preprocessed pixels."""

    def __init__(self, model_path: Path, num_threads: int) -> None:
        """Load the model and its sidecar and check that they agree.

        Raises:
            ModelContractError: the model file or sidecar is missing, or they disagree on shape or label count.
        """
        if not model_path.is_file():
            raise ModelContractError(
                f"model file {model_path} not found: set MODEL_PATH or pass --model (see the README)"
            )
        self.card: ModelCard = load_sidecar(model_path)
        try:
            self._interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelContractError(f"{model_path} is not a loadable TFLite model: {exc}") from None
        self.num_threads = num_threads
        self._lock = threading.Lock()
        input_details = self._interpreter.get_input_details()
        output_details = self._interpreter.get_output_details()
        if len(input_details) != 1 or len(output_details) != 1:
            raise ModelContractError(f"{model_path} must have exactly one input and one output tensor")
        self._input, self._output = input_details[0], output_details[0]
        self._check_agreement(model_path)

    def _check_agreement(self, model_path: Path) -> None:
        spec = self.card.input
        expected_shape = (1, spec.height_px, spec.width_px, spec.channels)
        actual_shape = tuple(int(d) for d in self._input["shape"])
        if actual_shape != expected_shape:
            raise ModelContractError(
                f"{model_path}: the sidecar says input shape {expected_shape}, the model has {actual_shape}"
            )
        actual_dtype = np.dtype(self._input["dtype"]).name
        if actual_dtype != spec.dtype:
            raise ModelContractError(
                f"{model_path}: the sidecar says input dtype {spec.dtype}, the model has {actual_dtype}"
            )
        output_size = int(self._output["shape"][-1])
        if output_size != len(self.card.labels):
            raise ModelContractError(
                f"{model_path}: the sidecar lists {len(self.card.labels)} labels, "
                f"the model outputs {output_size} classes"
            )

    @property
    def input_size_px(self) -> tuple[int, int]:
        """(width, height), the order Pillow's resize takes."""
        return self.card.input.width_px, self.card.input.height_px

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities for one image of uint8 RGB pixels at the model's input size."""
        batch = self._to_model_input(pixels)[np.newaxis, ...]
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], batch)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._output["index"])[0].copy()
        return self._dequantize_output(raw)

    def classify(self, pixels: np.ndarray, top_k: int) -> Answer:
        """The `top_k` most likely labels, most likely first, whether a cat was found and its breed identified."""
        probabilities = self.probabilities(pixels)
        top_k = max(1, min(top_k, len(self.card.labels)))
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        predictions = [Prediction(self.card.labels[i], float(probabilities[i])) for i in order.tolist()]
        cat_detected = self._cat_detected(predictions)
        identified = breed_identified(probabilities, self.card)
        coat = coat_of(probabilities, self.card)
        description = None if cat_detected is False else describe(predictions[0].breed, identified, coat)
        return Answer(predictions, cat_detected, identified, coat, description)

    def _cat_detected(self, predictions: list[Prediction]) -> bool | None:
        """True when the top label is a breed; None for a model that has no "No cat" class and cannot tell."""
        if NO_CAT_LABEL not in self.card.labels:
            return None
        return predictions[0].breed != NO_CAT_LABEL

    def _to_model_input(self, pixels: np.ndarray) -> np.ndarray:
        low, high = self.card.input.value_range
        values = pixels.astype(np.float32)
        if (low, high) != (0.0, 255.0):
            values = low + values * ((high - low) / 255.0)
        dtype = np.dtype(self._input["dtype"])
        if dtype == np.float32:
            return values
        scale, zero_point = self._input["quantization"]
        if scale:
            values = np.round(values / scale + zero_point)
        info = np.iinfo(dtype)
        return np.clip(values, info.min, info.max).astype(dtype)

    def _dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        if np.issubdtype(raw.dtype, np.integer):
            scale, zero_point = self._output["quantization"]
            dequantized: np.ndarray = (raw.astype(np.float32) - zero_point) * scale
            return dequantized
        return raw.astype(np.float32)
