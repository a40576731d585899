"""Benchmarks of the serving path, side by side in one run: `make bench` (results in benchmarks/results/).

For the default model (34 breeds, EfficientNet-Lite2 at 260 px), the previous default (12 breeds, the same
network) whose handler latency is the new default's budget, the first default (the starter, Lite0 at 224 px) and
EfficientNetB4 at 380x380 (randomly initialised: speed does not depend on the
weights): cold start in fresh processes; warm end-to-end latency on a 12-megapixel photo split into decode,
resize, inference and JSON, with JPEG draft decoding on and off; tagging throughput on the shared photos; peak
memory; B4 on LiteRT (ours), tflite-runtime 2.14, TensorFlow in-process (also limited to AVX2) and ONNX Runtime,
at 1 and 2 threads; the quantization modes; the installed size of the runtime dependencies; and what a million
requests cost on Lambda at a few memory sizes. Everything is measured in this one run, so the ratios hold even on
a shared, noisy machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.measured_models import (
    DEFAULT_MODEL,
    DEFAULT_NAME,
    PREVIOUS_MODEL,
    PREVIOUS_NAME,
    STARTER,
    STARTER_NAME,
)
from benchmarks.prices import (
    HTTP_API_USD_PER_REQUEST,
    LAMBDA_USD_PER_GB_SECOND,
    LAMBDA_USD_PER_REQUEST,
)
from lambda_function.settings import LAMBDA_MB_PER_VCPU

REPO_DIR = Path(__file__).resolve().parent.parent
WORK_DIR = REPO_DIR / "build" / "bench"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PHOTOS_DIR = REPO_DIR.parent / "shared" / "photos"
VENVS = {
    "runtime": REPO_DIR / ".venv-runtime",
    "tflite": REPO_DIR / ".venv-bench-tflite",
    "onnx": REPO_DIR / ".venv-bench-onnx",
}
TIME_ENGINE = Path(__file__).resolve().parent / "time_engine.py"

# Lambda memory sizes to price: one vCPU's worth and two, and the sizes around them.
MEMORY_SIZES_MB = (1024, LAMBDA_MB_PER_VCPU, 2048, 3008, 2 * LAMBDA_MB_PER_VCPU)


# The warm-latency settings: (key in the results, inference threads, JPEG draft decoding).
WARM_SETTINGS = [(f"{t}t_draft_{'on' if d else 'off'}", t, d) for t in (1, 2) for d in (True, False)]
HANDLER_ROUNDS = 3


def python_of(venv: str) -> Path:
    return VENVS[venv] / "bin" / "python"


def quietly(function: Any, *args: Any) -> Any:
    """TensorFlow's converter prints every captured tensor; keep the benchmark's output readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def prepare_b4_models() -> dict[str, Path]:
    """B4 (random weights, seed 0) as .keras, as TFLite in the four modes, and as ONNX; cached in build/bench."""
    import keras

    from conversion.convert import Mode, to_tflite
    from conversion.untrained_model import read_labels
    from lambda_function.datapath.model_contract import InputSpec, ModelCard, write_sidecar
    from training.image_folder import load_pixels, sample_images
    from training.model import build_classifier

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    keras_path = WORK_DIR / "b4.keras"
    if not keras_path.exists():
        keras.utils.set_random_seed(0)
        quietly(build_classifier(68, "efficientnetb4", weights=None).save, keras_path)
    model = None
    paths = {"keras": keras_path}
    labels = tuple(read_labels())
    for mode in Mode:
        paths[str(mode)] = WORK_DIR / f"b4-{mode}.tflite"
        if not paths[str(mode)].exists():
            model = model or keras.saving.load_model(keras_path, compile=False)
            calibration = load_pixels(sample_images(PHOTOS_DIR, 30), (380, 380)) if mode is Mode.FULL_INT8 else None
            paths[str(mode)].write_bytes(quietly(to_tflite, model, mode, calibration))
        card = ModelCard(name="efficientnetb4-random-init", version=str(mode), labels=labels, input=InputSpec(380, 380))
        write_sidecar(paths[str(mode)], card)
    paths["onnx"] = WORK_DIR / "b4.onnx"
    if not paths["onnx"].exists() and python_of("onnx").exists():
        saved_model = WORK_DIR / "b4_savedmodel"
        model = model or keras.saving.load_model(keras_path, compile=False)
        quietly(model.export, str(saved_model))
        subprocess.run(
            [
                str(python_of("onnx")),
                "-m",
                "tf2onnx.convert",
                "--saved-model",
                str(saved_model),
                "--output",
                str(paths["onnx"]),
                "--opset",
                "17",
            ],
            capture_output=True,
            check=False,
        )
    return paths


def time_engine(python: Path, engine: str, model: Path, threads: int, env: dict[str, str] | None = None) -> dict:
    if not python.exists():
        return {"engine": engine, "threads": threads, "error": f"{python.parent.parent.name} not installed"}
    completed = subprocess.run(
        [str(python), str(TIME_ENGINE), engine, str(model), str(threads)],
        cwd=REPO_DIR,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    return (
        json.loads(lines[-1])
        if lines
        else {"engine": engine, "threads": threads, "error": completed.stderr.strip().splitlines()[-1][:300]}
    )


def engines_side_by_side(b4: dict[str, Path]) -> list[dict]:
    """B4 float32 on each engine, and the quantization modes on LiteRT, at 1 and 2 threads."""
    rows = []
    # (name, what else is said of it, its Python, the engine, the model, extra environment); the version in the
    # label is the one the engine's own environment reports (time_engine.py reads the package's metadata).
    runs: list[tuple[str, str, str | Path, str, Path, dict[str, str]]] = [
        ("LiteRT", " (ours)", sys.executable, "litert", b4["float32"], {}),
        ("tflite-runtime", "", python_of("tflite"), "tflite-runtime", b4["float32"], {}),
        ("TensorFlow", " in-process", sys.executable, "tensorflow", b4["keras"], {}),
        (
            "TensorFlow",
            ", oneDNN limited to AVX2",
            sys.executable,
            "tensorflow",
            b4["keras"],
            {"ONEDNN_MAX_CPU_ISA": "AVX2"},
        ),
        ("ONNX Runtime", " (tf2onnx)", python_of("onnx"), "onnxruntime", b4["onnx"], {}),
    ]
    runs += [
        ("LiteRT", f", {mode}", sys.executable, "litert", b4[mode], {})
        for mode in ("float16", "dynamic-int8", "full-int8")
    ]
    for name, said, python, engine, model, env in runs:
        for threads in (1, 2):
            result = time_engine(Path(python), engine, model, threads, env)
            label = f"{name} {major_minor(result.get('version', ''))}{said}"
            rows.append({"setup": label, "ours": said == " (ours)", "model": model.name, **result})
            print(f"  {label} x{threads}: {result.get('median_ms', result.get('error'))}", flush=True)
    return rows


def major_minor(version: str) -> str:
    """`2.3.0` as `2.3`: the engine's release, as the table names it."""
    return ".".join(version.split(".")[:2])


def twelve_megapixel_jpeg() -> Path:
    """A real photo (the shared Persian_14) enlarged to 4000x3000 and saved as a phone would (quality 90)."""
    path = WORK_DIR / "persian-12mp.jpg"
    with Image.open(PHOTOS_DIR / "cats" / "Persian_14.jpg") as photo:
        photo.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(path, format="JPEG", quality=90)
    return path


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)


def warm_latency(model: Path, photo_path: Path, threads: int, draft: bool, runs: int = 20) -> dict:
    """The predict path in steps (decode, resize, inference, JSON) and whole through the Lambda handler."""
    from lambda_function.datapath.inference import Classifier
    from lambda_function.datapath.preprocessing import DecodeLimits, decode_image, resize_to_input
    from lambda_function.settings import DEFAULT_MAX_IMAGE_PIXELS

    data = photo_path.read_bytes()
    classifier = Classifier(model, num_threads=threads)
    limits = DecodeLimits(max_pixels=DEFAULT_MAX_IMAGE_PIXELS, jpeg_draft=draft)
    size = classifier.input_size_px
    steps: dict[str, list[float]] = {"decode": [], "resize": [], "inference": [], "json": [], "total": []}
    for index in range(runs + 2):
        t0 = time.perf_counter()
        image = decode_image(data, limits, target_size_px=size)
        t1 = time.perf_counter()
        pixels = resize_to_input(image, size)
        t2 = time.perf_counter()
        answer = classifier.classify(pixels, 5)
        t3 = time.perf_counter()
        json.dumps({"predictions": [{"breed": p.breed, "probability": p.probability} for p in answer.predictions]})
        t4 = time.perf_counter()
        if index >= 2:  # two warm-up rounds
            for name, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
                steps[name].append(seconds * 1000)
    result = {f"{name}_p50_ms": percentile(values, 0.5) for name, values in steps.items()}
    result["total_p95_ms"] = percentile(steps["total"], 0.95)
    return result


def interleaved_handler_latencies(models: dict[str, Path], photo_path: Path) -> dict[tuple[str, str], float]:
    """The handler's warm p50 for each model and setting, measured in rounds that take the models in turn.

    This machine's speed drifts over minutes, so timing one model's settings after another's skewed their ratio
    (1.29, 1.83 and 0.93 in three runs). In rounds, a drift falls on every model alike; each figure is the median
    of its rounds.
    """
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(HANDLER_ROUNDS):
        for name, model in models.items():
            for key, threads, draft in WARM_SETTINGS:
                samples.setdefault((name, key), []).append(handler_latency(model, photo_path, threads, draft))
    return {key: round(statistics.median(values), 2) for key, values in samples.items()}


WARM_HANDLER = """
import base64, json, statistics, sys, time
from lambda_function.local_context import LocalLambdaContext
from lambda_function.handler import lambda_handler
event = json.load(open("events/predict-base64.json"))
event["body"] = json.dumps({"image": base64.b64encode(open(sys.argv[1], "rb").read()).decode()})
timings = []
for index in range(12):
    started = time.perf_counter()
    response = lambda_handler(event, LocalLambdaContext())
    if index >= 2:
        timings.append((time.perf_counter() - started) * 1000)
assert response["statusCode"] == 200, response
print(json.dumps({"handler_p50_ms": round(statistics.median(timings), 2)}))
"""


def handler_latency(model: Path, photo_path: Path, threads: int, draft: bool) -> float:
    """Median of the Lambda handler answering a REST event with the photo as base64 (JSON in and out), warm."""
    env = {
        **os.environ,
        "MODEL_PATH": str(model),
        "INFERENCE_THREADS": str(threads),
        "JPEG_DRAFT": str(draft),
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_DISABLED": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    completed = subprocess.run(
        [sys.executable, "-c", WARM_HANDLER, str(photo_path)],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])["handler_p50_ms"]


COLD_START = """
import json
from lambda_function.local_context import LocalLambdaContext
from lambda_function.handler import lambda_handler
response = lambda_handler(json.load(open("events/predict-base64.json")), LocalLambdaContext())
assert response["statusCode"] == 200
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) parent that spawned this process.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": peak_kb / 1024}))
"""


def cold_start(model: Path, runs: int = 5) -> dict:
    """Fresh process (in the runtime-only environment) to first answer: import, load the model, answer."""
    python = python_of("runtime") if python_of("runtime").exists() else Path(sys.executable)
    timings, rss = [], []
    for _ in range(runs):
        started = time.perf_counter()
        completed = subprocess.run(
            [str(python), "-c", COLD_START],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            env={**os.environ, "MODEL_PATH": str(model), "POWERTOOLS_TRACE_DISABLED": "1"},
            timeout=120,
            check=True,
        )
        timings.append((time.perf_counter() - started) * 1000)
        rss.append(json.loads(completed.stdout.strip().splitlines()[-1])["peak_rss_mb"])
    return {
        "cold_start_p50_ms": round(statistics.median(timings)),
        "peak_rss_mb": round(max(rss)),
        "environment": python.parent.parent.name,
    }


def tagging_throughput(model: Path, threads: int) -> float:
    """Photos per second through the tagging path's classification (S3 transfer time excluded)."""
    from lambda_function.datapath.service import BreedService
    from lambda_function.settings import Settings

    service = BreedService(Settings(model_path=model, inference_threads=threads))
    photos = [p.read_bytes() for p in sorted(PHOTOS_DIR.rglob("*.jpg"))]
    started = time.perf_counter()
    for data in photos:
        service.classify_bytes(data, 1)
    return round(len(photos) / (time.perf_counter() - started), 1)


def runtime_dependencies_mb() -> float | None:
    """Installed size of requirements.txt in the runtime-only environment, without the venv's own pip/setuptools."""
    site = next(iter((VENVS["runtime"] / "lib").glob("python*/site-packages")), None)
    if site is None:
        return None
    tooling = ("pip", "setuptools", "pkg_resources", "_distutils_hack")
    total = sum(
        f.stat().st_size
        for f in site.rglob("*")
        if f.is_file() and not f.relative_to(site).parts[0].startswith(tooling)
    )
    return round(total / 1e6, 1)


def lambda_costs(latency_1_thread_ms: float, latency_2_threads_ms: float) -> list[dict]:
    """Cost per million predictions at a few memory sizes: below one vCPU of credit the CPU share shrinks in
    proportion; from 3538 MB two threads are paid for."""
    rows = []
    for memory_mb in MEMORY_SIZES_MB:
        threads = max(1, min(2, memory_mb // LAMBDA_MB_PER_VCPU))
        latency = latency_2_threads_ms if threads == 2 else latency_1_thread_ms * max(1, LAMBDA_MB_PER_VCPU / memory_mb)
        compute = math.ceil(latency) / 1000 * memory_mb / 1024 * LAMBDA_USD_PER_GB_SECOND
        rows.append(
            {
                "memory_mb": memory_mb,
                "threads": threads,
                "latency_ms": round(latency, 1),
                "usd_per_million": round(1e6 * (compute + LAMBDA_USD_PER_REQUEST + HTTP_API_USD_PER_REQUEST), 2),
            }
        )
    return rows


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO_DIR))
    started = time.perf_counter()
    print("preparing models (cached in build/bench)", flush=True)
    b4 = prepare_b4_models()
    models = {
        DEFAULT_NAME: DEFAULT_MODEL,
        PREVIOUS_NAME: PREVIOUS_MODEL,
        STARTER_NAME: STARTER,
        "EfficientNetB4 (float16, 380 px)": b4["float16"],
    }
    print("engines side by side on B4", flush=True)
    engines = engines_side_by_side(b4)
    photo = twelve_megapixel_jpeg()
    print("warm latency, cold start, throughput", flush=True)
    serving = {}
    handler = interleaved_handler_latencies(models, photo)
    for name, model in models.items():
        serving[name] = {
            "warm": {
                key: {**warm_latency(model, photo, threads, draft), "handler_p50_ms": handler[(name, key)]}
                for key, threads, draft in WARM_SETTINGS
            },
            **cold_start(model),
            "tagging_photos_per_s_1t": tagging_throughput(model, 1),
        }
        warm = serving[name]["warm"]
        serving[name]["lambda_costs"] = lambda_costs(
            warm["1t_draft_on"]["handler_p50_ms"], warm["2t_draft_on"]["handler_p50_ms"]
        )
    print("decoding memory of hostile images", flush=True)
    from benchmarks import decode_memory

    runtime_python = python_of("runtime") if python_of("runtime").exists() else Path(sys.executable)
    results = {
        "decode_memory": decode_memory.measure(runtime_python),
        "machine": machine_facts(),
        "photo_bytes": photo.stat().st_size,
        "engines": engines,
        "serving": serving,
        "runtime_dependencies_mb": runtime_dependencies_mb(),
        "seconds": round(time.perf_counter() - started),
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    from benchmarks.report import chart, markdown

    report = markdown(results)
    (RESULTS_DIR / "bench.md").write_text(report)
    chart(results, RESULTS_DIR / "bench.png")
    print(report)
    return 0


def machine_facts() -> dict:
    flags = (
        Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0]
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    isa = sorted({f for f in flags.split() if f.startswith(("avx512f", "avx512_vnni", "avx_vnni", "amx", "avx2"))})
    model_name = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cpu": model_name, "cpus": os.cpu_count(), "instruction_sets": isa, "python": platform.python_version()}


if __name__ == "__main__":
    sys.exit(main())
