"""Export a Keras classifier as a float32 `.tflite` file with its sidecar.

This is the single way the project makes a TFLite model; the quantization modes and the parity checks of the
conversion CLI build on it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import tensorflow as tf

from lambda_function.model_contract import InputSpec, ModelCard, write_sidecar


def export_tflite(
    model: tf.keras.Model,
    out_path: Path,
    *,
    labels: list[str],
    name: str,
    version: str,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Convert `model` (one NHWC RGB input taking [0, 255], softmax output) and write `out_path` and its sidecar.

    Returns:
        The path of the written `.tflite` file.
    """
    _, height, width, channels = model.input_shape
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(converter.convert())
    card = ModelCard(
        name=name,
        version=version,
        labels=tuple(labels),
        input=InputSpec(height_px=int(height), width_px=int(width), channels=int(channels)),
        provenance={
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "converter": f"tensorflow {tf.__version__}",
            "quantization": "none (float32)",
            **(provenance or {}),
        },
    )
    write_sidecar(out_path, card)
    return out_path
