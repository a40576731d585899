"""Images from a folder (a prepared data split, or any folder of photos) as model-ready pixel batches."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from lambda_function.datapath.preprocessing import DecodeLimits, prepare_image
from lambda_function.errors import ClassifierError
from lambda_function.image_names import is_image_name
from lambda_function.settings import DEFAULT_MAX_IMAGE_PIXELS


def list_images(folder: Path) -> list[Path]:
    """Every image file under `folder`, recursively, in a stable order."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.rglob("*") if is_image_name(p.name) and p.is_file())


def sample_images(folder: Path, count: int, seed: int = 0, skip: int = 0) -> list[Path]:
    """`count` images after the first `skip` of a seeded shuffle, so that two calls can take disjoint samples."""
    images = list_images(folder)
    random.Random(seed).shuffle(images)
    return images[skip : skip + count]


def load_pixels(paths: list[Path], size_px: tuple[int, int]) -> np.ndarray:
    """The images through the serving preprocessing, as one uint8 NHWC batch; unreadable files are skipped.

    Raises:
        ValueError: none of the files could be read.
    """
    limits = DecodeLimits(max_pixels=DEFAULT_MAX_IMAGE_PIXELS)
    batch = []
    for path in paths:
        try:
            batch.append(prepare_image(path.read_bytes(), size_px, limits))
        except ClassifierError:
            continue
    if not batch:
        raise ValueError(f"none of the {len(paths)} images could be decoded")
    return np.stack(batch)
