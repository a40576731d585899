"""What decoding one hostile or huge image adds to the process's peak memory (part of `make bench`).

Each case is an image at or near the 50-megapixel cap in a mode that is expensive to hold (RGBA WebP, 32-bit
TIFF, 16-bit PNG, LA PNG, palette PNG, CMYK JPEG), made flat so the files are small, as an attacker's would be.
Each is decoded by `prepare_image` in a fresh process whose peak is reset just before (Linux `clear_refs`), so
the figure is what that one request added, against the budget in `lambda_function.preprocessing`. Run alone:
`python -m benchmarks.decode_memory`.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO_DIR = Path(__file__).resolve().parent.parent
WORK_DIR = REPO_DIR / "build" / "bench" / "decode-memory"
SIDE = 7071  # 49,999,041 pixels: just under the 50-megapixel cap
CASES = {
    "RGBA WebP, lossless": ("RGBA", "WEBP", {"lossless": True}, SIDE),
    "RGBA WebP, largest accepted": ("RGBA", "WEBP", {"lossless": True}, 3950),
    "32-bit TIFF (mode I)": ("I", "TIFF", {"compression": "tiff_deflate"}, SIDE),
    "16-bit PNG": ("I;16", "PNG", {}, SIDE),
    "LA PNG": ("LA", "PNG", {}, SIDE),
    "RGBA PNG": ("RGBA", "PNG", {}, SIDE),
    "palette PNG with transparency": ("P", "PNG", {"transparency": 0}, SIDE),
    "CMYK JPEG": ("CMYK", "JPEG", {"quality": 90}, SIDE),
}

MEASURE = """
import json, sys
from pathlib import Path
from lambda_function.errors import ClassifierError
from lambda_function.preprocessing import DecodeLimits, prepare_image
data = Path(sys.argv[1]).read_bytes()
def status(name):
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(name)))
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from the current resident size
before = status("VmRSS:")
try:
    prepare_image(data, (260, 260), DecodeLimits(max_pixels=50_000_000))
    outcome = "decoded"
except ClassifierError as error:
    outcome = f"{error.status} {error.code}"
print(json.dumps({"added_mb": (status("VmHWM:") - before) / 1024, "outcome": outcome}))
"""


def make_case(mode: str, image_format: str, params: dict, side: int) -> bytes:
    image = Image.new(mode, (side, side), 7 if mode in {"P", "I", "I;16", "L"} else None)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **params)
    return buffer.getvalue()


def measure(python: Path = Path(sys.executable)) -> list[dict]:
    """Peak memory added by decoding each case, in a fresh process each."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (mode, image_format, params, side) in CASES.items():
        path = WORK_DIR / f"{name.split(',')[0].replace(' ', '-').replace('(', '').replace(')', '')}-{side}.bin"
        if not path.exists():
            path.write_bytes(make_case(mode, image_format, params, side))
        completed = subprocess.run(
            [str(python), "-c", MEASURE, str(path)], cwd=REPO_DIR, capture_output=True, text=True, check=True
        )
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        rows.append(
            {
                "case": name,
                "pixels": side * side,
                "file_bytes": path.stat().st_size,
                "added_peak_mb": round(result["added_mb"]),
                "outcome": result["outcome"],
            }
        )
    return rows


def markdown(rows: list[dict], budget_mb: float) -> str:
    lines = [
        f"Peak memory one request's decoding adds (budget {budget_mb:.0f} MB):",
        "",
        "| image | pixels | file | added peak | outcome |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['pixels'] / 1e6:.1f} M | {row['file_bytes'] / 1000:.0f} KB | "
            f"{row['added_peak_mb']} MB | {row['outcome']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from lambda_function.preprocessing import DECODE_MEMORY_BUDGET_BYTES

    print(markdown(measure(), DECODE_MEMORY_BUDGET_BYTES / 1e6))
