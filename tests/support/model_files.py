"""Copies of model files with their sidecars, and sidecar edits, for the tests that spoil them on purpose."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lambda_function.datapath.model_contract import sidecar_path_for


def copy_with_sidecar(model: Path, folder: Path) -> Path:
    copy = folder / f"model{model.suffix}"
    shutil.copy(model, copy)
    shutil.copy(sidecar_path_for(model), sidecar_path_for(copy))
    return copy


def edit_sidecar(model: Path, **changes: object) -> None:
    """Set sidecar fields; `input.height_px` style keys reach one level down."""
    path = sidecar_path_for(model)
    card = json.loads(path.read_text())
    for key, value in changes.items():
        outer, _, inner = key.partition(".")
        if inner:
            card[outer][inner] = value
        else:
            card[outer] = value
    path.write_text(json.dumps(card))
