"""Frozen-backbone features of a whole prepared dataset, computed once and cached: what the recipe search and the
leave-breeds-out study (`training.recipe_search`) train their heads on.

    python -m training.feature_cache --data build/breed-model/data --backbone efficientnet-lite2 --out DIR

For every image of every split it stores the pooled features and ImageNet's logits, of the image and of its mirror
image, computed by the same float32 LiteRT extractor the head-only recipe uses (`training.head_only`); with
`--augmented N`, also N randomly cropped, scaled and recoloured views of each training image (seeded), the
augmentation a frozen backbone can use. One `.npz` per backbone and view, keyed by the data manifest's hash.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from training.prepare_dataset import MANIFEST, NO_CAT, class_names, read_manifest

VIEWS = ("plain", "mirror")


def cache_path(out_dir: Path, backbone: str, view: str) -> Path:
    return out_dir / f"{backbone}-{view}.npz"


def load_features(out_dir: Path, backbone: str, view: str) -> dict[str, np.ndarray]:
    """A cached view: `pooled`, `logits`, and the rows' `split`, `label` (class index) and `origin`."""
    with np.load(cache_path(out_dir, backbone, view)) as stored:
        return {key: stored[key] for key in stored.files}


def augmented_view(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop of 60-100% of the area (aspect 3:4 to 4:3), scaled back, mirrored half the time, with small
    brightness, contrast and colour changes: the views a photo of the same cat could have been taken as."""
    width, height = image.size
    area = width * height * rng.uniform(0.6, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    crop_w = int(min(width, round(np.sqrt(area * aspect))))
    crop_h = int(min(height, round(np.sqrt(area / aspect))))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    view = image.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        view = enhancer(view).enhance(rng.uniform(0.8, 1.2))
    return view


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.feature_cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder written by training.prepare_dataset")
    parser.add_argument(
        "--backbone", default="efficientnet-lite2", choices=["efficientnet-lite0", "efficientnet-lite2"]
    )
    parser.add_argument("--out", type=Path, required=True, help="the cache folder")
    parser.add_argument("--augmented", type=int, default=0, help="random views of each training image (default 0)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    import keras

    from training.head_only import FeatureExtractor
    from training.model import build_classifier, split_at_head
    from training.train import prepared_size_px

    rows = read_manifest(args.data)
    labels = class_names(rows)
    size_px = prepared_size_px(args.data)
    keras.utils.set_random_seed(args.seed)
    model = build_classifier(len(labels), args.backbone, size_px, "imagenet", 0.0, 0, labels.index(NO_CAT))
    extractor = FeatureExtractor(split_at_head(model).features, size_px)
    key = hashlib.sha256((args.data / MANIFEST).read_bytes()).hexdigest()
    args.out.mkdir(parents=True, exist_ok=True)
    paths = [args.data / row["file"] for row in rows]
    meta: dict[str, Any] = {
        "split": np.array([row["split"] for row in rows]),
        "label": np.array([labels.index(row["class"]) for row in rows]),
        "origin": np.array([row.get("origin", "") for row in rows]),
        "labels": np.array(labels),
        "key": np.array(key),
    }
    for view in VIEWS:
        target = cache_path(args.out, args.backbone, view)
        if target.is_file() and str(np.load(target)["key"]) == key:
            continue
        pooled, logits = extractor.features(paths, mirror=view == "mirror")
        np.savez(target, pooled=pooled, logits=logits, **meta)
        print(f"cached {target}", flush=True)
    train = [i for i, row in enumerate(rows) if row["split"] == "train"]
    rng = np.random.default_rng(args.seed)
    for round_index in range(args.augmented):
        target = cache_path(args.out, args.backbone, f"augmented{round_index}")
        if target.is_file() and str(np.load(target)["key"]) == key:
            continue
        folder = args.out / "views"
        folder.mkdir(exist_ok=True)
        view_paths = []
        for i in train:
            with Image.open(paths[i]) as image:
                view_path = folder / f"{i}.png"
                augmented_view(image.convert("RGB"), rng).save(view_path, compress_level=1)
                view_paths.append(view_path)
        pooled, logits = extractor.features(view_paths, mirror=False)
        np.savez(
            target,
            pooled=pooled,
            logits=logits,
            **{k: v[train] if k in ("split", "label", "origin") else v for k, v in meta.items()},
        )
        print(f"cached {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
