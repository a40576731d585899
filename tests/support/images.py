"""Image bytes for tests, made from the shared real photos or crafted byte by byte for hostile cases."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image


def encode(image: Image.Image, format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def photo(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG header declaring `width` x `height` with a few bytes of data: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def gif_with_bomb_second_frame(first_frame: Image.Image, bomb_side_px: int = 60_000) -> bytes:
    """A two-frame GIF whose second frame's descriptor claims `bomb_side_px` square."""
    small = first_frame.resize((64, 64)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    inverted = Image.eval(first_frame.resize((64, 64)), lambda value: 255 - value).convert(
        "P", palette=Image.Palette.ADAPTIVE, colors=16
    )
    data = bytearray(encode(small, "GIF", save_all=True, append_images=[inverted], duration=100, loop=0))
    descriptor = b"\x2c\x00\x00\x00\x00\x40\x00\x40\x00"
    first = data.find(descriptor)
    second = data.find(descriptor, first + 1)
    assert first >= 0 and second > first, "expected two full-size frame descriptors"
    data[second + 5 : second + 9] = struct.pack("<HH", bomb_side_px, bomb_side_px)
    return bytes(data)


def progressive_jpeg_with_repeated_scans(repeats: int, side_px: int = 512) -> bytes:
    """A real progressive JPEG (flat, so small) whose last scan is repeated `repeats` times before its end: libjpeg
    walks the whole image once per scan, so such a file costs seconds to minutes to decode."""
    buffer = io.BytesIO()
    Image.new("RGB", (side_px, side_px), (120, 80, 40)).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    last_scan, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[last_scan:end] * repeats + data[end:]


def with_junk_between_segments(data: bytes, junk: bytes, where: str) -> bytes:
    """A JPEG with `junk` where a marker should be: after its APP0 segment, or before every scan. libjpeg skips
    such bytes to the next marker (with a warning) and decodes the rest."""
    if where == "after APP0":
        app0 = data.index(b"\xff\xe0")
        end = app0 + 2 + int.from_bytes(data[app0 + 2 : app0 + 4], "big")
        return data[:end] + junk + data[end:]
    return data.replace(b"\xff\xda", junk + b"\xff\xda")


EPS_BYTES = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nnewpath 0 0 moveto 100 100 lineto stroke showpage\n%%EOF\n"
)
PDF_BYTES = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
)
