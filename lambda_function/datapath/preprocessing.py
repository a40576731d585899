"""Image bytes to model pixels: the one preprocessing function shared by training and serving.

`prepare_image` is what the service calls, and `training/prepare_dataset.py` calls its two steps
(`decode_image`, then `resize_to_input`, keeping the decoded photo's size for its manifest), so a photo is
decoded, oriented, colour-converted and resized the same way in both places (no train/serve skew). It
returns uint8 RGB pixels at the model's input size; the inference engine maps them to the model's dtype
and value range.

Decoding is the part of the service most exposed to hostile input, so it is fenced: only an allowlist of
formats reaches Pillow's parsers, the declared pixel count is capped before any pixel is decoded, and
every way a parser can fail maps to a client error.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from lambda_function.errors import (
    ClassifierError,
    DeadlineExceeded,
    ImageTooComplex,
    TooManyPixels,
    TooMuchDecodeMemory,
    UndecodableImage,
    UnsupportedImage,
)
from lambda_function.request_deadline import Deadline

pillow_heif.register_heif_opener()
# The service's own pixel cap (`DecodeLimits.max_pixels`) rules, through `Image.MAX_IMAGE_PIXELS` below; Pillow's
# warning for images between half the cap and the cap would only be log noise for photos the service accepts.
# Set once at import: warning filters are process-global, and changing them per call would not be thread-safe.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# EPS, PDF, PSD and the other exotic parsers never see client bytes. HEIF covers HEIC photos from phones.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF")
RESAMPLING = Image.Resampling.BILINEAR  # antialiased when shrinking, as Pillow implements it
TRANSPARENT_BACKGROUND = (255, 255, 255)
# Draft decoding stops at a scale that still covers 1.9 times the model's input, so the final resize always
# shrinks by that much or more, with antialiasing. Measured on the shared photos with the test model: covering 1x,
# 5 of 185 photos changed their top-1 (near ties; pixel difference up to 3.7 levels of 255); covering 2x, none did
# (at most 1.1 levels). 1.9 rather than 2 lets a 4000x3000 photo decode at 1/4 scale for a 380 px model (1000x750
# covers 722 px, not 760), which halves B4's decoding time (benchmarks/run.py); the pixels stay within 0.4 levels
# of a full decode on 12-megapixel photos (0.15 at 2x).
JPEG_DRAFT_OVERSAMPLING = 1.9
# Decoding time grows with the work an image asks for, not only with its pixels: every scan of a progressive
# JPEG walks the whole image (about 28 ms each at the 50-megapixel cap on 2 cores; a 4.5 MB file of repeated scans
# took 234 s), and each strip or tile of a TIFF is a decoder call. Encoders write about 10 scans (18 for CMYK) and
# a few thousand strips. The scans are limited in number and in scans x pixels: 30 scans at the cap (under 1 s).
MAX_JPEG_SCANS = 100
MAX_JPEG_SCAN_PIXELS = 1_500_000_000
# A JPEG of several scans is handed to the decoder this many bytes at a time, so that its clock is read every few
# scans: a scan of a flat image is a few hundred bytes, and the whole scan limit fits in one 64 KB read. Small
# pieces cost a progressive photo nothing measurable (libjpeg suspends and resumes between them).
MULTI_SCAN_JPEG_READ_BYTES = 1024
MAX_TIFF_STRIPS_AND_TILES = 16_384
_TIFF_STRIP_OFFSETS, _TIFF_TILE_OFFSETS = 273, 324
_EXIF_ORIENTATION_TAG = 0x0112
_ORIENTATIONS_THAT_SWAP_AXES = {5, 6, 7, 8}

# Pillow's own parsers signal corrupt data with any of these; all mean "this is not a usable image".
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, ZeroDivisionError)


# What one request's decoding may add to the process's memory. The decoder's full-size buffer is the only
# full-size copy: a JPEG decodes at a reduced DCT scale (draft), anything else is shrunk with `reduce` right after
# decoding, before it is turned upright or converted. What would not fit is refused before decoding
# (`decode_cost_bytes`); `make bench` measures the worst cases (docs/security.md).
DECODE_MEMORY_BUDGET_BYTES = 250_000_000
# Bytes per pixel of Pillow's full-size image by mode (Pillow keeps RGB, LA, CMYK, I and F in 4 bytes a pixel).
_STORED_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# Full-size copies a decoder holds besides the image. WebP: libwebp's animation decoder, whose canvas and frame
# buffers come on top of the image (measured, 15.4 bytes a pixel for RGBA); HEIF: libheif's decoded planes;
# BMP: Pillow's run-length decoder builds the whole image in a buffer first (benchmarks/decode_memory.py).
_DECODER_COPIES = {"WEBP": 4, "HEIF": 2, "BMP": 2}
# Pillow's image keeps a pointer and some bookkeeping per row, and decoders hold a few rows of their own (PNG
# unfilters against the previous row): for a 1 x 50,000,000 image the rows, not the pixels, cost the most.
_BYTES_PER_ROW = 16
_ROW_BUFFERS = 3
# A progressive JPEG keeps every DCT coefficient of the whole image until its last scan: 2 bytes per coefficient,
# one coefficient per pixel of each component at its sampling, whatever the draft scale of the output.
_JPEG_COEFFICIENT_BYTES = 2
# Shrinking works on bands of about this many pixels: converting (palette, 16-bit) and `reduce` (which copies
# images with alpha to premultiply them) then never hold a second full-size copy.
_BAND_PIXELS = 1 << 20
# An image with one side under twice the wanted size is reduced along its other side alone only above this many
# pixels (a 1 x N or 493 x N image); smaller ones are converted and resized as they are, which is cheap.
_ELONGATED_MIN_PIXELS = 4 * _BAND_PIXELS


@dataclass(frozen=True)
class DecodeLimits:
    """Limits on what the decoder accepts.

    `time_budget_s` bounds one decode's time (None: unbounded, as training wants): a decode is a series of
    steps (each read of the file by the decoder, each tile of the shrinking, the conversion, the resize), and the
    time is checked between them, so a decode over its budget is abandoned at its next step (a JPEG of many scans
    is read in small pieces for this). No step is long: the limits above bound the ones that cannot be cut (a HEIC
    or a TIFF is decoded in one call; `make bench` times the largest accepted HEIC).
    """

    max_pixels: int
    jpeg_draft: bool = True
    memory_budget_bytes: int = DECODE_MEMORY_BUDGET_BYTES
    time_budget_s: float | None = None


class _DecodeClock:
    """When a decode must stop: at its time budget (the image asks for too much work) or at the request's
    deadline (the request ran out of time), whichever comes first."""

    def __init__(self, limits: DecodeLimits, deadline: Deadline | None) -> None:
        self._budget_s = limits.time_budget_s
        self._request = deadline or Deadline.never()
        self._stop = self._request.within(self._budget_s)

    def check(self) -> None:
        """
        Raises:
            DeadlineExceeded: the request's deadline has passed.
            ImageTooComplex: the decode has taken its whole time budget.
        """
        now = self._request.clock()  # read once per step (a test's clock counts the steps)
        if now < self._stop.at:
            return
        if now >= self._request.at:
            raise DeadlineExceeded("the request's deadline passed while its image was being decoded")
        raise ImageTooComplex(f"the image takes more than {self._budget_s:g} s to decode")


class _TimedBytes(io.BytesIO):
    """The encoded image as the decoders read it: every read first checks the decode's clock, so a decode out of
    time stops at the decoder's next read (Pillow's decoders read 64 KB at a time, or `piece_bytes` once set:
    only for pixel data, as Pillow's header parsers take a short read for a truncated file)."""

    def __init__(self, data: bytes, clock: _DecodeClock) -> None:
        super().__init__(data)
        self._decode_clock = clock
        self.piece_bytes: int | None = None

    def read(self, size: int | None = -1) -> bytes:
        self._decode_clock.check()
        if self.piece_bytes is not None and (size is None or size < 0 or size > self.piece_bytes):
            size = self.piece_bytes
        return super().read(size)


def prepare_image(
    data: bytes,
    size_px: tuple[int, int],
    limits: DecodeLimits,
    deadline: Deadline | None = None,
) -> np.ndarray:
    """Decode image bytes and resize them to `size_px` (width, height).

    Args:
        data: the encoded image (any format in ALLOWED_FORMATS).
        size_px: the model's input size as (width, height).
        limits: pixel, memory and time caps, and whether JPEG draft decoding may be used.
        deadline: when the request must be answered; the decode stops at its next step after it. The time
            budget is read on its clock too (None: no deadline, on `time.monotonic`).

    Returns:
        A (height, width, 3) uint8 array of RGB pixels.

    Raises:
        UnsupportedImage: not an image in an allowed format.
        TooManyPixels: the image declares more pixels than `limits.max_pixels`.
        UndecodableImage: an allowed format with corrupt or truncated data.
        TooMuchDecodeMemory, ImageTooComplex: decoding would take too much memory, or takes too long.
        DeadlineExceeded: the deadline passed during the decode.
    """
    decode_clock = _DecodeClock(limits, deadline)
    image = _decode(data, limits, size_px, decode_clock)
    try:
        decode_clock.check()
        return resize_to_input(image, size_px)
    finally:
        image.close()


def resize_to_input(image: Image.Image, size_px: tuple[int, int]) -> np.ndarray:
    """An upright RGB image (from `decode_image`) resized to `size_px` (width, height), as uint8 pixels."""
    return np.asarray(image.resize(size_px, RESAMPLING), dtype=np.uint8)


def decode_image(
    data: bytes,
    limits: DecodeLimits,
    target_size_px: tuple[int, int] | None = None,
    deadline: Deadline | None = None,
) -> Image.Image:
    """Decode the first frame of an image into an upright RGB Pillow image.

    With `target_size_px` (the size the image will be resized to), a JPEG is decoded at the smallest DCT scale
    (1/2, 1/4, 1/8) that still covers 1.9 times that size (if `limits.jpeg_draft`): a 12-megapixel phone photo
    then decodes several times faster, and the final resize still shrinks, so the result is equivalent
    (tests/unit/test_preprocessing.py measures it). Other formats are shrunk by box averaging (`reduce`) to about that
    size right after decoding, so that only the decoder's buffer is ever full size. `deadline` is as in
    `prepare_image`.
    """
    return _decode(data, limits, target_size_px, _DecodeClock(limits, deadline))


def _decode(
    data: bytes, limits: DecodeLimits, target_size_px: tuple[int, int] | None, clock: _DecodeClock
) -> Image.Image:
    # Pillow raises DecompressionBombError above twice this figure, for every frame it ever opens, so the
    # cap holds for later frames of an animation as well as for the first, with no warning filters (which
    # are process-global and not thread-safe) involved.
    Image.MAX_IMAGE_PIXELS = max(1, limits.max_pixels // 2)
    source = _TimedBytes(data, clock)
    try:
        image = Image.open(source, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise TooManyPixels(f"the image has more than {limits.max_pixels:,} pixels") from None
    except UnidentifiedImageError:
        raise UnsupportedImage(f"not an image in a supported format ({', '.join(ALLOWED_FORMATS)})") from None
    except _DECODE_ERRORS:
        raise UndecodableImage("the image data is corrupt and cannot be decoded") from None
    try:
        plan = _check_decode_work(image, data)
        source.piece_bytes = plan.read_bytes
        return _to_upright_rgb(image, limits, target_size_px, clock, draftable=plan.draftable)
    except ClassifierError:
        image.close()
        raise
    except Image.DecompressionBombError:
        image.close()
        raise TooManyPixels(f"the image has more than {limits.max_pixels:,} pixels") from None
    except MemoryError:
        image.close()
        raise TooMuchDecodeMemory("the image is too large to decode") from None
    except _DECODE_ERRORS:
        image.close()
        raise UndecodableImage("the image data is corrupt or truncated and cannot be decoded") from None


def _to_upright_rgb(
    image: Image.Image,
    limits: DecodeLimits,
    target_size_px: tuple[int, int] | None,
    clock: _DecodeClock,
    *,
    draftable: bool,
) -> Image.Image:
    width, height = image.size
    if width * height > limits.max_pixels:
        raise TooManyPixels(f"the image has {width * height:,} pixels, more than the limit of {limits.max_pixels:,}")
    # Pillow's PNG reader decodes the whole image to look for an eXIf chunk after the pixels: that would be the
    # full-size decode before the memory check. Such a PNG's orientation is read after decoding (exif_transpose).
    has_exif_now = image.format != "PNG" or "exif" in image.info
    orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1) if has_exif_now else 1
    wanted: tuple[int, int] | None = None
    if target_size_px is not None:
        wide, high = (math.ceil(side * JPEG_DRAFT_OVERSAMPLING) for side in target_size_px)
        wanted = (high, wide) if orientation in _ORIENTATIONS_THAT_SWAP_AXES else (wide, high)
        if limits.jpeg_draft and draftable:
            image.draft(None, wanted)
    cost = decode_cost_bytes(image, full_size=(width, height))
    if cost > limits.memory_budget_bytes:
        raise TooMuchDecodeMemory(
            f"the image ({width}x{height}, {image.mode}) needs about {cost / 1e6:.0f} MB to decode, more than the "
            f"{limits.memory_budget_bytes / 1e6:.0f} MB a request may use"
        )
    image.load()
    if wanted is not None:
        image = _shrunk(image, wanted, clock)
    clock.check()
    upright = ImageOps.exif_transpose(image)
    turned = upright.size != image.size  # a quarter turn swapped the sides
    rgb = _to_rgb(upright)
    # The photo's own size, upright (the pixels may be a draft-decoded or shrunk version): what a dataset records.
    rgb.info["source_size_px"] = (height, width) if turned else (width, height)
    return rgb


@dataclass(frozen=True)
class _DecodePlan:
    """How an image that passed the work limits is decoded: whether at a reduced scale (a JPEG's draft mode),
    and in pieces of how many bytes (None: as the decoder asks)."""

    draftable: bool = False
    read_bytes: int | None = None


def _check_decode_work(image: Image.Image, data: bytes) -> _DecodePlan:
    """How the image is decoded (`_DecodePlan`). An MPO's first frame is a JPEG, and may be draft-decoded; a
    lossless JPEG may not (libjpeg fails part-way), so it is decoded at full size, within the same memory budget,
    and shrunk after.

    Raises:
        ImageTooComplex: more progressive scans, or TIFF strips and tiles, than the limits above.
    """
    if image.format in ("JPEG", "MPO"):
        scans, frame = _walk_jpeg(data, stop_after=MAX_JPEG_SCANS + 1)
        if scans > MAX_JPEG_SCANS:
            raise ImageTooComplex(f"the JPEG has more than {MAX_JPEG_SCANS} scans")
        pixels = image.size[0] * image.size[1]
        if scans * pixels > MAX_JPEG_SCAN_PIXELS:
            raise ImageTooComplex(
                f"the JPEG has {scans} scans of {pixels:,} pixels each; at most {MAX_JPEG_SCAN_PIXELS:,} scanned "
                "pixels in all are decoded"
            )
        return _DecodePlan(
            draftable=frame not in _LOSSLESS_FRAME_MARKERS,
            read_bytes=MULTI_SCAN_JPEG_READ_BYTES if scans > 1 else None,
        )
    if image.format == "TIFF":
        tags = image.tag_v2  # type: ignore[attr-defined]  # a TiffImageFile's
        pieces = len(tags.get(_TIFF_STRIP_OFFSETS, ())) + len(tags.get(_TIFF_TILE_OFFSETS, ()))
        if pieces > MAX_TIFF_STRIPS_AND_TILES:
            raise ImageTooComplex(
                f"the TIFF is cut into {pieces:,} strips or tiles, more than {MAX_TIFF_STRIPS_AND_TILES:,}"
            )
    return _DecodePlan()


def jpeg_scan_count(data: bytes, stop_after: int) -> int:
    """The start-of-scan markers of a JPEG's first image (counting stops at `stop_after`)."""
    return _walk_jpeg(data, stop_after)[0]


def _walk_jpeg(data: bytes, stop_after: int) -> tuple[int, int | None]:
    """(scans, frame marker) of a JPEG's first image, found by walking its segments as libjpeg reads them (it
    stops after `stop_after` scans). Bytes where a marker should be are skipped up to the next marker, as libjpeg
    skips them (with a warning, and decodes on), so junk between segments hides no scan. Inside entropy-coded data
    a 0xFF byte is followed by 0x00 or a restart marker, so the next real marker is the next 0xFF followed by
    anything else."""
    scans, frame, position, end = 0, None, 2, len(data)
    while position + 4 <= end and scans < stop_after:
        if data[position] != 0xFF:  # junk between segments: on to the next marker, as libjpeg goes
            position = _next_marker(data, position, skip_restarts=False)
            if position < 0:
                return scans, frame
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:  # end of image
            break
        if marker in _STANDALONE_MARKERS or marker == 0x00:
            position += 2
            continue
        if frame is None and marker in _FRAME_MARKERS:
            frame = marker
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:  # start of scan: skip its entropy-coded data to the next marker
            scans += 1
            position = _next_marker(data, position, skip_restarts=True)
            if position < 0:
                return scans, frame
    return scans, frame


def _next_marker(data: bytes, position: int, *, skip_restarts: bool) -> int:
    """Where the next marker (a 0xFF, not a stuffed 0xFF 0x00, and not a restart marker when `skip_restarts`)
    starts at or after `position`; -1 if none does."""
    end = len(data)
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= end:
            return -1
        following = data[position + 1]
        if following == 0x00 or following == 0xFF or (skip_restarts and 0xD0 <= following <= 0xD7):
            position += 1 if following == 0xFF else 2
            continue
        return position


_STANDALONE_MARKERS = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
# Start-of-frame markers: 0xC0 to 0xCF but DHT (0xC4), JPG (0xC8) and DAC (0xCC); the lossless processes among them.
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_LOSSLESS_FRAME_MARKERS = frozenset({0xC3, 0xC7, 0xCB, 0xCF})


def decode_cost_bytes(image: Image.Image, full_size: tuple[int, int]) -> int:
    """Memory that decoding `image` (opened, not yet loaded; after any draft) takes at its peak: the decoder's
    full-size image, its rows' bookkeeping and row buffers, and the decoder's own buffers where it has them (a
    progressive JPEG's coefficients, sized by `full_size`, the image's size before any draft). Everything after
    `_shrunk` is small."""
    width, height = image.size
    bytes_per_pixel = _STORED_BYTES_PER_PIXEL.get(image.mode, 4)
    cost = width * height * bytes_per_pixel * _DECODER_COPIES.get(image.format or "", 1)
    cost += height * _BYTES_PER_ROW + _ROW_BUFFERS * width * bytes_per_pixel
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        cost += _progressive_jpeg_coefficient_bytes(image, full_size)
    return cost


def _progressive_jpeg_coefficient_bytes(image: Image.Image, full_size: tuple[int, int]) -> int:
    """The coefficient buffers of a progressive JPEG, at full size (the draft scale does not shrink them)."""
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * len(image.getbands())
    width, height = full_size
    h_max = max(layer[1] for layer in layers)
    v_max = max(layer[2] for layer in layers)
    coefficients: int = sum(width * height * layer[1] * layer[2] // (h_max * v_max) for layer in layers)
    return coefficients * _JPEG_COEFFICIENT_BYTES


def _shrunk(image: Image.Image, wanted: tuple[int, int], clock: _DecodeClock) -> Image.Image:
    """`image` box-averaged by the largest whole factor that keeps it at least `wanted` in both sides; where one
    side is already smaller than that, along the other side alone.

    So a 1 x 50,000,000 or a 50,000,000 x 1 image shrinks too (reducing only when both sides were large let such
    images through at full size, and converting and resizing them took gigabytes). The work goes tile by tile,
    each tile at most `_BAND_PIXELS` source pixels, so no full-size copy exists beyond the decoder's.
    """
    width, height = image.size
    factor = min(width // wanted[0], height // wanted[1])
    if factor >= 2:  # the same factor along both sides: the shape is kept, as the models were trained on
        x_factor = y_factor = factor
    elif width * height > _ELONGATED_MIN_PIXELS:  # one side already small, and the image large: the other alone
        x_factor, y_factor = max(1, width // wanted[0]), max(1, height // wanted[1])
    else:  # an ordinary photo near the input size: left as it is, as it always was
        return image
    if x_factor < 2 and y_factor < 2:
        return image
    out_width, out_height = width // x_factor, height // y_factor
    tile_cols = max(1, min(out_width, _BAND_PIXELS // (x_factor * y_factor)))  # output columns per tile
    tile_rows = max(1, _BAND_PIXELS // (tile_cols * x_factor * y_factor))  # output rows per tile
    reduced: Image.Image | None = None
    for top in range(0, out_height, tile_rows):
        for left in range(0, out_width, tile_cols):
            clock.check()
            box = (
                left * x_factor,
                top * y_factor,
                min(out_width, left + tile_cols) * x_factor,
                min(out_height, top + tile_rows) * y_factor,
            )
            small = _reducible(image.crop(box)).reduce((x_factor, y_factor))
            if reduced is None:
                reduced = Image.new(small.mode, (out_width, out_height))
            reduced.paste(small, (left, top))
    assert reduced is not None  # a factor >= 2 means at least one tile
    reduced.info = dict(image.info)  # the EXIF orientation, read by exif_transpose next
    image.close()
    return reduced


def _reducible(band: Image.Image) -> Image.Image:
    """A band in a mode `reduce` can average: palette indices, bilevel and 16-bit pixels are converted first."""
    if band.mode == "1":
        return band.convert("L")
    if band.mode in {"P", "PA"}:
        return band.convert("RGBA" if band.mode == "PA" or "transparency" in band.info else "RGB")
    if band.mode.startswith("I;16"):
        return _high_bit_depth_to_l(band)
    return band


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency onto a white background."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        image = _high_bit_depth_to_l(image)
        mode = image.mode
    has_alpha = mode in {"RGBA", "RGBa", "LA", "La", "PA"} or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*TRANSPARENT_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale to 8-bit: Pillow's own convert() would clip everything above 255 to white.

    Converted a band of rows at a time, so the wide intermediate arrays never exist at full size.
    """
    width, height = image.size
    out = np.empty((height, width), dtype=np.uint8)
    rows = max(1, _CONVERSION_BAND_PIXELS // max(1, width))
    for top in range(0, height, rows):
        band = np.asarray(image.crop((0, top, width, min(height, top + rows))))
        scaled = np.clip(band, 0, 255) if image.mode == "F" else np.clip(band.astype(np.int64), 0, 65535) / 257.0
        out[top : top + band.shape[0]] = np.round(scaled)
    return Image.fromarray(out, mode="L")


_CONVERSION_BAND_PIXELS = 1 << 20
