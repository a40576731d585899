"""What decoding one hostile or huge image adds to the process's peak memory, and how long it takes (part of
`make bench`).

Each case is an image at or near the 50-megapixel cap in a mode, format or shape that is expensive to hold (RGBA
WebP, 32-bit TIFF, 16-bit PNG, LA PNG, palette PNG, CMYK JPEG, progressive CMYK JPEG, HEIC, a TIFF of one-row
strips; PNG and run-length BMP 1 x N, N x 1, 493 x N and N x 493), made flat so the files are small, as an
attacker's would be. Two more are the slowest accepted decodes, whose steps cannot be cut by the decode's time
budget: a progressive JPEG with as many scans as the cap allows at that size, and the largest HEIC the memory
budget accepts, with photo-like content (libheif's time grows with what the picture holds).
Each is decoded by `prepare_image` in a fresh process whose peak is reset just before (Linux `clear_refs`), so
the figure is what that one request added, against the budget in `lambda_function.datapath.preprocessing`. Run alone:
`python -m benchmarks.decode_memory`.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from lambda_function.settings import DEFAULT_MAX_IMAGE_PIXELS

REPO_DIR = Path(__file__).resolve().parent.parent
WORK_DIR = REPO_DIR / "build" / "bench" / "decode-memory"
CAP = DEFAULT_MAX_IMAGE_PIXELS
SIDE = int(CAP**0.5)  # 7071 x 7071 = 49,999,041 pixels: just under the 50-megapixel cap
NARROW = 493  # a side too short to be shrunk along, in the old code, with the other as long as the cap allows
SQUARE, TALL, WIDE = (SIDE, SIDE), (1, CAP), (CAP, 1)
NARROW_TALL, NARROW_WIDE = (NARROW, CAP // NARROW), (CAP // NARROW, NARROW)
# name: (mode, format, save parameters, (width, height)); "BMP RLE" is written by hand (Pillow cannot encode it),
# `repeat_last_scan` repeats a progressive JPEG's last scan, and `textured` draws photo-like content.
CASES: dict[str, tuple[str, str, dict, tuple[int, int]]] = {
    "RGBA WebP, lossless": ("RGBA", "WEBP", {"lossless": True}, SQUARE),
    "RGBA WebP, largest accepted": ("RGBA", "WEBP", {"lossless": True}, (3950, 3950)),
    "32-bit TIFF (mode I)": ("I", "TIFF", {"compression": "tiff_deflate"}, SQUARE),
    "16-bit PNG": ("I;16", "PNG", {}, SQUARE),
    "LA PNG": ("LA", "PNG", {}, SQUARE),
    "RGBA PNG": ("RGBA", "PNG", {}, SQUARE),
    "palette PNG with transparency": ("P", "PNG", {"transparency": 0}, SQUARE),
    "CMYK JPEG": ("CMYK", "JPEG", {"quality": 90}, SQUARE),
    "progressive CMYK JPEG": ("CMYK", "JPEG", {"quality": 90, "progressive": True}, SQUARE),
    "HEIC": ("RGB", "HEIF", {"quality": 50}, SQUARE),
    "HEIC, largest accepted, textured": ("RGB", "HEIF", {"quality": 90, "textured": True}, (5580, 5580)),
    "progressive JPEG, most scans accepted (30)": (
        "RGB",
        "JPEG",
        {"progressive": True, "repeat_last_scan": 20},
        SQUARE,
    ),
    "TIFF, one row per strip (LZW)": ("L", "TIFF", {"compression": "tiff_lzw", "rows_per_strip": 1}, SQUARE),
    "RGBA PNG, 1 x N": ("RGBA", "PNG", {}, TALL),
    "RGBA PNG, N x 1": ("RGBA", "PNG", {}, WIDE),
    "RGBA PNG, 493 x N": ("RGBA", "PNG", {}, NARROW_TALL),
    "RGBA PNG, N x 493": ("RGBA", "PNG", {}, NARROW_WIDE),
    "palette PNG with transparency, 1 x N": ("P", "PNG", {"transparency": 0}, TALL),
    "palette PNG with transparency, N x 1": ("P", "PNG", {"transparency": 0}, WIDE),
    "palette PNG with transparency, 493 x N": ("P", "PNG", {"transparency": 0}, NARROW_TALL),
    "palette PNG with transparency, N x 493": ("P", "PNG", {"transparency": 0}, NARROW_WIDE),
    "BMP RLE, 1 x N": ("P", "BMP RLE", {}, TALL),
    "BMP RLE, N x 1": ("P", "BMP RLE", {}, WIDE),
    "BMP RLE, 493 x N": ("P", "BMP RLE", {}, NARROW_TALL),
    "BMP RLE, N x 493": ("P", "BMP RLE", {}, NARROW_WIDE),
}
MEASURE = """
import json, sys, time
from pathlib import Path
from lambda_function.errors import ClassifierError
from lambda_function.datapath.preprocessing import DecodeLimits, prepare_image
data = Path(sys.argv[1]).read_bytes()
def status(name):
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(name)))
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from the current resident size
before = status("VmRSS:")
started = time.perf_counter()
try:
    prepare_image(data, (260, 260), DecodeLimits(max_pixels=int(sys.argv[2])))
    outcome = "decoded"
except ClassifierError as error:
    outcome = f"{error.status} {error.code}"
seconds = time.perf_counter() - started
print(json.dumps({"added_mb": (status("VmHWM:") - before) / 1024, "outcome": outcome, "seconds": seconds}))
"""


def make_case(mode: str, image_format: str, params: dict, size: tuple[int, int]) -> bytes:
    if image_format == "BMP RLE":
        return rle_bmp(size)
    if image_format == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    params = dict(params)
    rows_per_strip = params.pop("rows_per_strip", None)
    repeats = params.pop("repeat_last_scan", 0)
    textured = params.pop("textured", False)
    if rows_per_strip:
        from PIL import TiffImagePlugin

        info = TiffImagePlugin.ImageFileDirectory_v2()
        info[278] = rows_per_strip
        params["tiffinfo"] = info
    image = textured_image(size) if textured else Image.new(mode, size, 7 if mode in {"P", "I", "I;16", "L"} else None)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **params)
    data = buffer.getvalue()
    if repeats:
        last_scan, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
        data = data[:end] + data[last_scan:end] * repeats + data[end:]
    return data


def textured_image(size: tuple[int, int]) -> Image.Image:
    """Seeded noise blown up 8 times: smooth gradients and edges everywhere, which codecs work on as on a photo."""
    import numpy as np

    coarse = np.random.default_rng(0).integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR)


def rle_bmp(size: tuple[int, int]) -> bytes:
    """A run-length (RLE8) BMP of `size` whose data ends at once: about a kilobyte for any number of pixels."""
    import struct

    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    data = b"\x00\x01"  # end of bitmap
    offset = 14 + 40 + len(palette)
    header = struct.pack("<2sIHHI", b"BM", offset + len(data), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, size[0], size[1], 1, 8, 1, len(data), 2835, 2835, 256, 0)
    return header + info + palette + data


def measure_one(path: Path, python: Path = Path(sys.executable)) -> dict:
    """What decoding the image in `path` added to a fresh process's peak memory (`added_mb`), its time
    (`seconds`) and its outcome ("decoded", or the error's status and code), at the service's pixel cap."""
    completed = subprocess.run(
        [str(python), "-c", MEASURE, str(path), str(CAP)], cwd=REPO_DIR, capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure(python: Path = Path(sys.executable)) -> list[dict]:
    """Peak memory added by decoding each case, in a fresh process each."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (mode, image_format, params, size) in CASES.items():
        slug = "".join(ch if ch.isalnum() else "-" for ch in name)
        path = WORK_DIR / f"{slug}-{size[0]}x{size[1]}.bin"
        if not path.exists():
            path.write_bytes(make_case(mode, image_format, params, size))
        result = measure_one(path, python)
        rows.append(
            {
                "case": name,
                "pixels": size[0] * size[1],
                "size": f"{size[0]} x {size[1]}",
                "file_bytes": path.stat().st_size,
                "added_peak_mb": round(result["added_mb"]),
                "decode_s": round(result["seconds"], 2),
                "outcome": result["outcome"],
            }
        )
    return rows


def markdown(rows: list[dict], budget_mb: float) -> str:
    lines = [
        f"Peak memory one request's decoding adds (budget {budget_mb:.0f} MB), and its time:",
        "",
        "| image | pixels | file | added peak | decode | outcome |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        seconds = f"{row['decode_s']:.2f} s" if "decode_s" in row else "not measured"
        lines.append(
            f"| {row['case']} | {row['pixels'] / 1e6:.1f} M | {row['file_bytes'] / 1000:.0f} KB | "
            f"{row['added_peak_mb']} MB | {seconds} | {row['outcome']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from lambda_function.datapath.preprocessing import DECODE_MEMORY_BUDGET_BYTES

    print(markdown(measure(), DECODE_MEMORY_BUDGET_BYTES / 1e6))
