"""Prepare the training data: photos in one folder per breed plus "No cat" photos, split and resized.

    python -m training.prepare_dataset --cats data/raw/cat-breeds --no-cat data/raw/house-rooms --out data/prepared
    python -m training.prepare_dataset --cats ../shared/datasets/cat-breeds-12/images \
        --no-cat ../shared/datasets/cat-breeds-12/no-cat --size 260 --out data/cat-breeds-12

`--cats` is either the Kaggle Cat Breeds Dataset as downloaded (`images/<Breed>/*.jpg`, checked against
`data/cats.csv` when present) or any folder of folders, one per class (`<Breed>/*.jpg`; a folder named "No cat"
is that class). It is repeatable: the default model learns from Oxford-IIIT Pet photos and web photos, whose
classes are united. Each image keeps its dataset's name as its `origin` (the folder's name, or its parent's when
the folder is an `images/` folder), and the split is stratified by class and origin, so each split holds both
kinds of photo in proportion and can be measured per kind (`training.evaluate --origin`). Every image under
each `--no-cat` folder (repeatable; for example the House Rooms dataset, one folder per room type, and a folder
of other animals and objects) is "No cat".

Writes `<out>/<train|val|test>/<class>/<sha256>.png`: every image decoded and resized by the serving preprocessing
(`lambda_function.datapath.preprocessing`), stored losslessly, so training sees exactly the pixels serving would
compute.
Exact duplicates (same bytes) are removed across all classes before the split, so no test image leaks into
training; unreadable and tiny images are dropped and counted. Each class is capped (seeded sample) and split
stratified (seeded). Writes `manifest.csv`, `report.json`, `report.md` and `class_distribution.png`. Refuses to
write into an output that already holds a prepared dataset (`--overwrite`).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from lambda_function.datapath.model_contract import NO_CAT_LABEL
from lambda_function.datapath.preprocessing import DecodeLimits, decode_image, resize_to_input
from lambda_function.errors import ClassifierError
from lambda_function.image_names import is_image_name
from lambda_function.settings import DEFAULT_MAX_IMAGE_PIXELS

NO_CAT = NO_CAT_LABEL  # the sidecar contract's spelling, one source
NO_CAT_ORIGIN = "no-cat"
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("split", "class", "origin", "file", "source", "sha256", "width", "height")
STAGING = ".staging"


@dataclass(frozen=True)
class PrepareConfig:
    cats_dirs: tuple[Path, ...]
    no_cat_dirs: tuple[Path, ...]
    out_dir: Path
    size_px: int = 380
    max_per_class: int = 1000
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    min_side_px: int = 64
    seed: int = 42
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    overwrite: bool = False

    def __post_init__(self) -> None:
        if abs(sum(self.fractions) - 1) > 1e-6 or min(self.fractions) < 0:
            raise ValueError(f"split fractions {self.fractions} must be non-negative and sum to 1")
        if self.size_px < 32 or self.max_per_class < 3 or self.min_side_px < 1 or self.workers < 1:
            raise ValueError("size must be at least 32 px, the cap at least 3 images, workers at least 1")


@dataclass(frozen=True)
class Source:
    """One input image and the class it belongs to."""

    path: Path
    label: str
    origin: str  # the cats' dataset ("cat-breeds-12"), or "no-cat", recorded per image and stratified on
    folder: str = ""  # for "No cat" images, the folder it came from ("rooms/Kitchen"), for the report


@dataclass(frozen=True)
class Screened:
    source: Source
    sha256: str | None = None
    width: int = 0
    height: int = 0
    dropped: str | None = None  # why, if it was: "unreadable", "too_small"


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        guard_output(config)
        sources, csv_check = collect_sources(config)
        screened = screen(sources, config)
        kept, duplicates = drop_duplicates(screened)
        capped = cap_per_class(kept, config)
        splits = split_stratified(capped, config)
        rows = place_files(splits, config)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = build_report(sources, screened, duplicates, kept, rows, csv_check, config)
    write_outputs(rows, report, config)
    print(f"prepared {len(rows)} images in {config.out_dir} ({report['dropped']})")
    return 0


def parse_args(argv: list[str] | None) -> PrepareConfig:
    parser = argparse.ArgumentParser(prog="python -m training.prepare_dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cats",
        type=Path,
        action="append",
        default=[],
        help="the Kaggle Cat Breeds Dataset folder (holds images/), or one folder per class; repeatable",
    )
    parser.add_argument(
        "--no-cat",
        "--rooms",
        type=Path,
        action="append",
        default=[],
        dest="no_cat",
        help="a folder whose images (at any depth) are all 'No cat', e.g. the House Rooms dataset; repeatable",
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the prepared dataset")
    defaults = PrepareConfig(cats_dirs=(), no_cat_dirs=(), out_dir=Path())  # every default, from the config
    parser.add_argument(
        "--size", type=int, default=defaults.size_px, help="training resolution in pixels (default %(default)s, B4's)"
    )
    parser.add_argument(
        "--max-per-class",
        type=int,
        default=defaults.max_per_class,
        help="cap per class, seeded sample (default %(default)s)",
    )
    parser.add_argument(
        "--split",
        default="/".join(f"{fraction * 100:g}" for fraction in defaults.fractions),
        help="train/val/test percentages (default %(default)s)",
    )
    parser.add_argument(
        "--min-side", type=int, default=defaults.min_side_px, help="drop images whose shorter side is smaller"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the cap and the split")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="processes that decode images")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already prepared in --out")
    parser.add_argument(
        "--download",
        action="store_true",
        help="fetch both datasets with kagglehub first (needs Kaggle credentials and internet)",
    )
    args = parser.parse_args(argv)
    cats, no_cat = list(args.cats), list(args.no_cat)
    if args.download:
        kaggle_cats, rooms = download_datasets()
        cats.append(kaggle_cats)
        no_cat.append(rooms)
    if not cats:
        parser.error("give --cats (or --download)")
    try:
        fractions = tuple(float(part) / 100 for part in args.split.split("/"))
    except ValueError:
        parser.error(f"--split {args.split!r} is not like 80/10/10")
    if len(fractions) != 3:
        parser.error(f"--split {args.split!r} needs three parts")
    return PrepareConfig(
        cats_dirs=tuple(cats),
        no_cat_dirs=tuple(no_cat),
        out_dir=args.out,
        size_px=args.size,
        max_per_class=args.max_per_class,
        fractions=fractions,
        min_side_px=args.min_side,
        seed=args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
    )


def download_datasets() -> tuple[Path, Path]:
    """Both datasets through kagglehub (cached by it); needs `pip install kagglehub` and Kaggle credentials."""
    try:
        import kagglehub
    except ImportError:
        raise SystemExit("--download needs kagglehub: pip install -r requirements/train.txt") from None
    cats = Path(kagglehub.dataset_download("ma7555/cat-breeds-dataset"))
    rooms = Path(kagglehub.dataset_download("robinreni/house-rooms-image-dataset"))
    return cats, rooms


def guard_output(config: PrepareConfig) -> None:
    """Refuse to mix two preparations in one folder; with --overwrite, clear the old one first."""
    out = config.out_dir
    if (out / MANIFEST).exists() or (out / STAGING).exists() or any((out / split).exists() for split in SPLITS):
        if not config.overwrite:
            raise FileExistsError(f"{out} already holds a prepared dataset; pass --overwrite to replace it")
        for name in (*SPLITS, STAGING):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (MANIFEST, "report.json", "report.md", "class_distribution.png"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p.name))


def collect_sources(config: PrepareConfig) -> tuple[list[Source], dict[str, object]]:
    """Every candidate image with its class: one class per folder of each `--cats`, "No cat" for every `--no-cat`
    image."""
    sources: list[Source] = []
    csv_checks: dict[str, object] = {}
    for cats_dir in config.cats_dirs:
        if not cats_dir.is_dir():
            raise FileNotFoundError(f"{cats_dir} not found: --cats must be a folder of class folders")
        # The Kaggle download keeps its class folders in images/; any other dataset is the folder of folders itself.
        images_dir = cats_dir / "images" if (cats_dir / "images").is_dir() else cats_dir
        origin = dataset_name(cats_dir)
        found = [
            Source(path, path.relative_to(images_dir).parts[0], origin)
            for path in images_under(images_dir)
            if len(path.relative_to(images_dir).parts) == 2
        ]
        csv_checks[origin] = check_against_csv(cats_dir / "data" / "cats.csv", found)
        sources += found
    if len(csv_checks) < len(config.cats_dirs):
        raise ValueError("two --cats folders have the same name; their photos could not be told apart")
    for folder in config.no_cat_dirs:
        if not folder.is_dir():
            raise FileNotFoundError(f"--no-cat folder {folder} not found")
        sources += [
            Source(path, NO_CAT, NO_CAT_ORIGIN, path.parent.relative_to(folder.parent).as_posix())
            for path in images_under(folder)
        ]
    if not sources:
        raise ValueError(f"no images found in class folders under {', '.join(map(str, config.cats_dirs))}")
    return sources, csv_checks


def dataset_name(cats_dir: Path) -> str:
    """The name an image's origin is recorded under: `cat-breeds-12` for `.../cat-breeds-12/images` or for
    `.../cat-breeds-12`."""
    resolved = cats_dir.resolve()
    return resolved.parent.name if resolved.name == "images" else resolved.name


def check_against_csv(csv_path: Path, sources: list[Source]) -> dict[str, object]:
    """Compare folder breeds with the dataset's own table (file names start with the cat's id); report only."""
    if not csv_path.is_file():
        return {"cats_csv": "absent"}
    with csv_path.open(newline="", encoding="utf-8") as handle:
        breed_by_id = {row["id"]: row["breed"] for row in csv.DictReader(handle) if "id" in row and "breed" in row}
    cats = [s for s in sources if s.label != NO_CAT]
    ids = [s.path.stem.split("_")[0] for s in cats]
    listed = [breed_by_id.get(i) for i in ids]
    return {
        "cats_csv": "present",
        "csv_rows": len(breed_by_id),
        "images_listed_in_csv": sum(b is not None for b in listed),
        "folder_breed_differs_from_csv": sum(b is not None and b != s.label for b, s in zip(listed, cats, strict=True)),
    }


def screen(sources: list[Source], config: PrepareConfig) -> list[Screened]:
    """Hash, decode, check and resize every image once; resized pixels wait in a staging folder under their hash."""
    staging = config.out_dir / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    jobs = [(source, config.size_px, config.min_side_px, staging) for source in sources]
    return list(_parallel(_screen_one, jobs, config.workers, "decoding"))


def _screen_one(job: tuple[Source, int, int, Path]) -> Screened:
    source, size_px, min_side_px, staging = job
    try:
        data = source.path.read_bytes()
    except OSError:
        return Screened(source, dropped="unreadable")
    sha = hashlib.sha256(data).hexdigest()
    limits = DecodeLimits(max_pixels=DEFAULT_MAX_IMAGE_PIXELS)
    try:
        # The same two steps as serving's prepare_image; the photo's size is needed for the size check and the
        # manifest.
        image = decode_image(data, limits, target_size_px=(size_px, size_px))
    except ClassifierError:
        return Screened(source, sha, dropped="unreadable")
    width, height = image.info["source_size_px"]  # the photo's own size, not the draft-decoded one
    if min(width, height) < min_side_px:
        return Screened(source, sha, width, height, dropped="too_small")
    target = staging / f"{sha}.png"
    if not target.exists():
        # Two copies of one image may be decoded at once in two processes: write aside, then rename atomically.
        partial = staging / f"{sha}.{os.getpid()}.part"
        Image.fromarray(resize_to_input(image, (size_px, size_px))).save(partial, format="PNG", compress_level=1)
        partial.replace(target)
    return Screened(source, sha, width, height)


def _parallel(function: Callable, jobs: list, workers: int, description: str) -> Iterator:
    progress = {"total": len(jobs), "desc": description, "unit": "img", "disable": None}
    if workers == 1:
        yield from tqdm(map(function, jobs), **progress)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from tqdm(pool.map(function, jobs, chunksize=32), **progress)


def drop_duplicates(screened: list[Screened]) -> tuple[list[Screened], list[Screened]]:
    """Keep the first image of each content hash (sources are in sorted order), wherever the copies are."""
    seen: set[str | None] = set()
    kept: list[Screened] = []
    duplicates: list[Screened] = []
    for item in screened:
        if item.dropped:
            continue
        (duplicates if item.sha256 in seen else kept).append(item)
        seen.add(item.sha256)
    return kept, duplicates


def cap_per_class(kept: list[Screened], config: PrepareConfig) -> dict[str, list[Screened]]:
    by_class: dict[str, list[Screened]] = defaultdict(list)
    for item in kept:
        by_class[item.source.label].append(item)
    rng = random.Random(config.seed)
    return {
        label: sorted(rng.sample(items, min(len(items), config.max_per_class)), key=lambda s: s.source.path)
        for label, items in sorted(by_class.items())
    }


def split_stratified(by_class: dict[str, list[Screened]], config: PrepareConfig) -> dict[str, dict[str, list]]:
    """Per class and origin: a seeded shuffle, then the first fraction to train, the next to val, the rest to test."""
    rng = random.Random(config.seed + 1)
    splits: dict[str, dict[str, list[Screened]]] = {split: defaultdict(list) for split in SPLITS}
    for label, items in by_class.items():
        for origin in sorted({item.source.origin for item in items}):
            shuffled = [item for item in items if item.source.origin == origin]
            rng.shuffle(shuffled)
            n_val = round(len(shuffled) * config.fractions[1])
            n_test = round(len(shuffled) * config.fractions[2])
            n_train = len(shuffled) - n_val - n_test
            splits["train"][label] += shuffled[:n_train]
            splits["val"][label] += shuffled[n_train : n_train + n_val]
            splits["test"][label] += shuffled[n_train + n_val :]
    return {split: dict(by_label) for split, by_label in splits.items()}


def place_files(splits: dict[str, dict[str, list[Screened]]], config: PrepareConfig) -> list[dict[str, object]]:
    """Move the chosen staged images into split/class folders; drop the staging folder."""
    staging = config.out_dir / STAGING
    rows: list[dict[str, object]] = []
    for split, by_class in splits.items():
        for label, items in by_class.items():
            folder = config.out_dir / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for item in items:
                relative = Path(split) / label / f"{item.sha256}.png"
                (staging / f"{item.sha256}.png").replace(config.out_dir / relative)
                rows.append(
                    {
                        "split": split,
                        "class": label,
                        "origin": item.source.origin,
                        "file": relative.as_posix(),
                        "source": str(item.source.path),
                        "sha256": item.sha256,
                        "width": item.width,
                        "height": item.height,
                    }
                )
    shutil.rmtree(staging, ignore_errors=True)
    return rows


def build_report(
    sources: list[Source],
    screened: list[Screened],
    duplicates: list[Screened],
    kept: list[Screened],
    rows: list[dict[str, object]],
    csv_check: dict[str, object],
    config: PrepareConfig,
) -> dict:
    dropped = Counter(item.dropped for item in screened if item.dropped)
    per_split = {split: Counter(row["class"] for row in rows if row["split"] == split) for split in SPLITS}
    origins = sorted({str(row["origin"]) for row in rows})
    return {
        "config": {
            "size_px": config.size_px,
            "max_per_class": config.max_per_class,
            "split": config.fractions,
            "seed": config.seed,
            "min_side_px": config.min_side_px,
        },
        "sources": {
            "images_found": len(sources),
            "by_origin": dict(Counter(s.origin for s in sources)),
            "no_cat_folders": dict(sorted(Counter(s.folder for s in sources if s.label == NO_CAT).items())),
            "cats_csv": csv_check,
        },
        "dropped": {
            "unreadable": dropped.get("unreadable", 0),
            "too_small": dropped.get("too_small", 0),
            "duplicates": len(duplicates),
        },
        "classes": {
            label: {
                "found": sum(s.label == label for s in sources),
                "usable": sum(k.source.label == label for k in kept),
                **{split: per_split[split].get(label, 0) for split in SPLITS},
            }
            for label in sorted({s.label for s in sources})
        },
        "totals": {split: sum(per_split[split].values()) for split in SPLITS},
        "totals_by_origin": {
            origin: {split: sum(row["split"] == split and row["origin"] == origin for row in rows) for split in SPLITS}
            for origin in origins
        },
    }


def write_outputs(rows: list[dict[str, object]], report: dict, config: PrepareConfig) -> None:
    out = config.out_dir
    with (out / MANIFEST).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    report["manifest_sha256"] = hashlib.sha256((out / MANIFEST).read_bytes()).hexdigest()
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    plot_class_distribution(report["classes"], out / "class_distribution.png")


def report_markdown(report: dict) -> str:
    lines = [
        "# Prepared dataset",
        "",
        f"Images found: {report['sources']['images_found']}; "
        f"dropped: {report['dropped']}; kept per split: {report['totals']}.",
        "",
        "| class | found | usable (after dropping) | train | val | test |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {label} | {c['found']} | {c['usable']} | {c['train']} | {c['val']} | {c['test']} |"
        for label, c in report["classes"].items()
    ]
    return "\n".join(lines) + "\n"


def plot_class_distribution(classes: dict[str, dict[str, int]], path: Path) -> None:
    from training.plots import pyplot

    plt = pyplot()
    labels = list(classes)
    usable = [classes[c]["usable"] for c in labels]
    kept = [classes[c]["train"] + classes[c]["val"] + classes[c]["test"] for c in labels]
    figure, axes = plt.subplots(figsize=(9, max(3, 0.22 * len(labels))))
    axes.barh(labels, usable, color="#c8d6e5", label="usable before the cap")
    axes.barh(labels, kept, color="#2e86de", label="kept (train + val + test)")
    axes.invert_yaxis()
    axes.set_xlabel("images")
    axes.legend(loc="lower right")
    axes.set_title("Images per class")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def read_manifest(prepared_dir: Path) -> list[dict[str, str]]:
    """The manifest rows of a prepared dataset."""
    path = prepared_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run training.prepare_dataset first")
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def class_names(rows: Iterable[dict[str, str]]) -> list[str]:
    """Class names in a stable order (sorted), which is the model's output order."""
    return sorted({row["class"] for row in rows})


if __name__ == "__main__":
    sys.exit(main())
