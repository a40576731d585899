"""How closely a TFLite model follows its Keras original, and how fast it runs, measured with the serving runtime."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lambda_function.datapath.inference import Classifier

LATENCY_WARMUP_RUNS = 3


@dataclass(frozen=True)
class Parity:
    images: int
    top1_agreement: float
    top5_overlap: float
    max_probability_difference: float
    distinct_top1_labels: int  # a parity figure means little if the reference answers the same label every time

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_parity(reference_probabilities: np.ndarray, classifier: Classifier, pixels: np.ndarray) -> Parity:
    """Compare the reference (Keras) probabilities with the TFLite model's on the same preprocessed images."""
    candidate = np.stack([classifier.probabilities(image) for image in pixels])
    k = min(5, candidate.shape[1])
    reference_top = np.argsort(-reference_probabilities, axis=1)[:, :k]
    candidate_top = np.argsort(-candidate, axis=1)[:, :k]
    overlap = [len(set(r) & set(c)) / k for r, c in zip(reference_top.tolist(), candidate_top.tolist(), strict=True)]
    return Parity(
        images=len(pixels),
        top1_agreement=float(np.mean(reference_top[:, 0] == candidate_top[:, 0])),
        top5_overlap=float(np.mean(overlap)),
        max_probability_difference=float(np.max(np.abs(reference_probabilities - candidate))),
        distinct_top1_labels=len(set(reference_top[:, 0].tolist())),
    )


def median_latency_ms(model_path: Path, threads: int, image: np.ndarray, runs: int = 10) -> float:
    """Median wall time of one LiteRT inference (model already loaded and warmed up)."""
    classifier = Classifier(model_path, num_threads=threads)
    for _ in range(LATENCY_WARMUP_RUNS):
        classifier.probabilities(image)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        classifier.probabilities(image)
        timings.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(timings), 2)
