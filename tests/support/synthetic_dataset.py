"""A small dataset in the two Kaggle layouts, with learnable classes and known faults, for the training tests."""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

BREEDS = ("Abyssinian", "Bengal", "Siamese")
ROOM_TYPES = ("Bathroom", "Kitchen")


@dataclass(frozen=True)
class SyntheticDataset:
    cats_dir: Path
    rooms_dir: Path
    corrupt_files: int
    too_small_files: int
    duplicate_files: int
    images_per_class: int


def _pattern(label: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """Each class has its own look (colour and texture), with random variation between images."""
    y, x = np.mgrid[0:size, 0:size] / size
    jitter = rng.uniform(-25, 25, size=3)
    phase = rng.uniform(0, 2 * np.pi)
    if label == "Abyssinian":  # warm, blotchy
        base = np.stack([200 + 30 * np.sin(9 * x + phase), 120 + 20 * np.cos(7 * y), 60 + 0 * x], axis=-1)
    elif label == "Bengal":  # dark horizontal stripes
        stripes = (np.sin(40 * y + phase) > 0) * 110
        base = np.stack([70 + stripes, 50 + stripes * 0.8, 30 + stripes * 0.5], axis=-1)
    elif label == "Siamese":  # cream centre, dark points
        dark = np.clip(((x - 0.5) ** 2 + (y - 0.5) ** 2) * 4, 0, 1)[..., None]
        base = (1 - dark) * np.array([235, 225, 200]) + dark * np.array([60, 45, 40])
    else:  # rooms: cool vertical gradients
        base = np.stack([90 + 60 * x, 120 + 60 * x, 170 + 60 * np.cos(3 * x + phase)], axis=-1)
    noise = rng.normal(0, 12, size=(size, size, 3))
    return np.clip(base + jitter + noise, 0, 255).astype(np.uint8)


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=92)


def make_synthetic_dataset(root: Path, images_per_class: int = 40, seed: int = 0) -> SyntheticDataset:
    """Kaggle layouts: `cats/images/<Breed>/<id>_<n>.jpg` with `cats/data/cats.csv`; `rooms/<RoomType>/*.jpg`.

    Faults planted: 3 corrupt files (truncated JPEG, text named .jpg, an empty .png), 1 tiny image, and 2 exact
    duplicates (one copy in the same breed folder, one in another breed's folder).
    """
    rng = np.random.default_rng(seed)
    cats, rooms = root / "cats", root / "rooms"
    table = []
    for breed in BREEDS:
        for n in range(images_per_class):
            cat_id = 10_000 + len(table)
            _save(cats / "images" / breed / f"{cat_id}_{n}.jpg", _pattern(breed, rng, int(rng.integers(96, 160))))
            table.append({"id": str(cat_id), "breed": breed, "age": "Adult"})
    for n in range(images_per_class):
        room = ROOM_TYPES[n % len(ROOM_TYPES)]
        _save(rooms / room / f"{room.lower()}_{n}.jpg", _pattern("room", rng, int(rng.integers(96, 160))))
    (cats / "data").mkdir(parents=True)
    with (cats / "data" / "cats.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "breed", "age"])
        writer.writeheader()
        writer.writerows(table)

    good = (cats / "images" / "Bengal" / "10040_0.jpg").read_bytes()
    (cats / "images" / "Bengal" / "99990_0.jpg").write_bytes(good[: len(good) // 3])
    (cats / "images" / "Siamese" / "99991_0.jpg").write_text("this is a note, not a photo")
    (rooms / "Kitchen" / "broken.png").write_bytes(b"")
    _save(cats / "images" / "Abyssinian" / "99992_0.jpg", _pattern("Abyssinian", rng, 20))
    original = cats / "images" / "Abyssinian" / "10000_0.jpg"
    shutil.copy(original, cats / "images" / "Abyssinian" / "99993_0.jpg")
    shutil.copy(original, cats / "images" / "Bengal" / "99994_0.jpg")
    return SyntheticDataset(
        cats, rooms, corrupt_files=3, too_small_files=1, duplicate_files=2, images_per_class=images_per_class
    )
