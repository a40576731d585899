"""The shared preprocessing: every image a phone or a website produces becomes the right RGB pixels, and every
hostile or broken image becomes a clean client error (checked through the handler, as a client sees it)."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lambda_function.datapath.preprocessing import (
    MULTI_SCAN_JPEG_READ_BYTES,
    RESAMPLING,
    DecodeLimits,
    decode_image,
    jpeg_scan_count,
    prepare_image,
)
from lambda_function.errors import (
    DeadlineExceeded,
    ImageTooComplex,
    TooManyPixels,
    TooMuchDecodeMemory,
    UndecodableImage,
    UnsupportedImage,
)
from lambda_function.request_deadline import Deadline
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS, REPO_DIR, TEST_INPUT_SIZE_PX, parsed_body, rest_event
from tests.support.images import (
    EPS_BYTES,
    PDF_BYTES,
    encode,
    gif_with_bomb_second_frame,
    photo,
    png_declaring,
    progressive_jpeg_with_repeated_scans,
    with_junk_between_segments,
)

SIZE = (TEST_INPUT_SIZE_PX, TEST_INPUT_SIZE_PX)
LIMITS = DecodeLimits(max_pixels=50_000_000, jpeg_draft=False)
CAT = photo(CAT_PHOTOS[0])


def pixels(data: bytes, limits: DecodeLimits = LIMITS) -> np.ndarray:
    return prepare_image(data, SIZE, limits)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float32) - b.astype(np.float32))))


REFERENCE = pixels(encode(CAT, "PNG"))

# Inverse of the transform that EXIF orientation N asks a viewer to apply (ImageOps.exif_transpose applies it).
STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_turned_upright(orientation):
    transform = STORE_FOR_ORIENTATION[orientation]
    stored = CAT if transform is None else CAT.transpose(transform)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif)

    upright = pixels(data)
    ignoring_exif = np.asarray(stored.resize(SIZE, Image.Resampling.BILINEAR))

    assert mean_abs_diff(upright, REFERENCE) < 3
    if orientation != 1:  # the check has teeth: without applying EXIF the pixels differ a lot
        assert mean_abs_diff(ignoring_exif, REFERENCE) > 15


def test_palette_png_with_transparency_is_composited_on_white():
    image = Image.new("P", (100, 100), 0)
    image.putpalette([0, 0, 0, 200, 50, 50] + [0] * 762)
    image.paste(1, (50, 0, 100, 100))
    data = encode(image, "PNG", transparency=0)

    result = prepare_image(data, (100, 100), LIMITS)

    assert result[:, :45].min() == 255  # transparent half: white
    assert np.allclose(result[:, 55:], [200, 50, 50], atol=1)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "1", "CMYK", "YCbCr", "P"])
def test_every_pillow_mode_becomes_rgb(mode):
    source = CAT.convert(mode)
    format = "JPEG" if mode in {"CMYK", "YCbCr"} else "PNG" if mode != "YCbCr" else "JPEG"
    result = pixels(encode(source, "TIFF" if mode == "YCbCr" else format))

    assert result.shape == (*SIZE, 3) and result.dtype == np.uint8
    if mode in {"RGBA", "CMYK", "P", "YCbCr"}:
        assert mean_abs_diff(result, REFERENCE) < 12


def test_16_bit_greyscale_png_keeps_its_tones():
    grey = np.asarray(CAT.convert("L"), dtype=np.uint16)
    data = encode(Image.fromarray(grey * 257), "PNG")
    assert Image.open(__import__("io").BytesIO(data)).mode.startswith("I")

    result = pixels(data)
    expected = pixels(encode(CAT.convert("L"), "PNG"))

    assert np.abs(result.astype(int) - expected.astype(int)).max() <= 1


def test_animated_gif_uses_its_first_frame():
    first = CAT.resize((200, 150))
    second = Image.new("RGB", (200, 150), (0, 255, 0))
    animated = encode(first, "GIF", save_all=True, append_images=[second], duration=100)
    still = encode(first, "GIF")

    assert np.array_equal(pixels(animated), pixels(still))


def test_later_gif_frame_declaring_a_bomb_is_refused_if_ever_decoded():
    data = gif_with_bomb_second_frame(CAT)
    image = decode_image(data, LIMITS)  # the first frame decodes
    assert image.size == (64, 64)

    with Image.open(__import__("io").BytesIO(data)) as animation, pytest.raises(Image.DecompressionBombError):
        animation.seek(1)  # the pixel cap also holds for later frames


def test_heic_and_webp_photos_are_accepted():
    heic = pixels(encode(CAT, "HEIF", quality=90))
    webp = pixels(encode(CAT, "WEBP", quality=90))

    assert mean_abs_diff(heic, REFERENCE) < 4
    assert mean_abs_diff(webp, REFERENCE) < 4


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"", UnsupportedImage, id="zero-bytes"),
        pytest.param(b"hello, I am text, not a picture\n" * 10, UnsupportedImage, id="text"),
        pytest.param(EPS_BYTES, UnsupportedImage, id="eps"),
        pytest.param(PDF_BYTES, UnsupportedImage, id="pdf"),
        pytest.param(png_declaring(100_000, 100_000), TooManyPixels, id="bomb"),
        pytest.param(png_declaring(8_000, 7_000), TooManyPixels, id="just-over-the-cap"),
        pytest.param(CAT_PHOTOS[0].read_bytes()[:3000], UndecodableImage, id="truncated-jpeg"),
        pytest.param(encode(CAT, "PNG")[:-200], UndecodableImage, id="truncated-png"),
    ],
)
def test_bad_bytes_raise_the_matching_client_error(data, error):
    with pytest.raises(error):
        pixels(data)


def _cat_resized(side: int) -> Image.Image:
    return CAT.resize((side, side * 3 // 4))


BAD_IMAGES = [
    pytest.param(png_declaring(100_000, 100_000), 413, id="decompression-bomb"),
    pytest.param(CAT_PHOTOS[1].read_bytes()[:4000], 422, id="truncated-jpeg"),
    pytest.param(b"", 400, id="zero-bytes"),
    pytest.param(b"GIF? no: plain text\n", 415, id="text"),
    pytest.param(EPS_BYTES, 415, id="eps-named-png"),
    pytest.param(PDF_BYTES, 415, id="pdf-named-png"),
    pytest.param(encode(CAT.convert("CMYK"), "JPEG"), 200, id="cmyk-jpeg"),
    pytest.param(
        encode(Image.fromarray(np.asarray(CAT.convert("L"), dtype=np.uint16) * 257), "PNG"), 200, id="16-bit-png"
    ),
    pytest.param(
        encode(CAT.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
        200,
        id="palette-png-with-transparency",
    ),
    pytest.param(
        encode(_cat_resized(300), "GIF", save_all=True, append_images=[_cat_resized(300).rotate(90)], duration=80),
        200,
        id="animated-gif",
    ),
    pytest.param(gif_with_bomb_second_frame(CAT), 200, id="animated-gif-with-bomb-frame"),
    pytest.param(encode(CAT, "HEIF"), 200, id="heic"),
    pytest.param(encode(CAT, "WEBP"), 200, id="webp"),
]


@pytest.mark.parametrize(("data", "status"), BAD_IMAGES)
def test_unusual_and_hostile_images_get_a_prediction_or_a_clean_4xx(handler, lambda_context, data, status):
    event = rest_event("POST", "/predict", {"image": base64.b64encode(data).decode()})

    response = handler.lambda_handler(event, lambda_context)

    assert response["statusCode"] == status
    body: dict[str, Any] = parsed_body(response)
    if status == 200:
        assert len(body["predictions"]) == 5
    else:
        assert set(body) == {"error"}


def top1(service: Any, data: bytes, limits: DecodeLimits) -> int:
    return int(
        np.argmax(service.classifier.probabilities(prepare_image(data, service.classifier.input_size_px, limits)))
    )


def test_jpeg_draft_decoding_keeps_top1_on_every_shared_photo(service):
    draft, full = DecodeLimits(50_000_000, jpeg_draft=True), DecodeLimits(50_000_000, jpeg_draft=False)
    photos = CAT_PHOTOS + DOG_PHOTOS
    diffs, disagreements = [], []
    for path in photos:
        data = path.read_bytes()
        diffs.append(mean_abs_diff(pixels(data, draft), pixels(data, full)))
        if top1(service, data, draft) != top1(service, data, full):
            disagreements.append(path.name)

    assert len(photos) >= 180
    assert disagreements == []
    assert max(diffs) < 3.0 and float(np.mean(diffs)) > 0  # close, and draft mode really was in effect


def test_jpeg_draft_decoding_keeps_top1_on_12_megapixel_phone_photos(service):
    draft, full = DecodeLimits(50_000_000, jpeg_draft=True), DecodeLimits(50_000_000, jpeg_draft=False)
    for path in CAT_PHOTOS[::10]:
        big = encode(photo(path).resize((4000, 3000), Image.Resampling.BICUBIC), "JPEG", quality=90)
        assert mean_abs_diff(pixels(big, draft), pixels(big, full)) < 3.0
        assert top1(service, big, draft) == top1(service, big, full)


def test_jpeg_draft_decoding_stays_within_half_a_level_at_b4_resolution():
    full, draft = DecodeLimits(50_000_000, jpeg_draft=False), DecodeLimits(50_000_000, jpeg_draft=True)
    for path in CAT_PHOTOS[::20]:
        big = encode(photo(path).resize((4000, 3000), Image.Resampling.BICUBIC), "JPEG", quality=90)
        decoded = decode_image(big, draft, target_size_px=(380, 380))
        assert decoded.size == (1000, 750)  # the 1/4 scale, not 1/2
        assert mean_abs_diff(prepare_image(big, (380, 380), draft), prepare_image(big, (380, 380), full)) < 0.5


def test_an_image_under_the_pixel_cap_decodes_without_pillows_bomb_warning():
    # In a fresh interpreter with Python's default warning filters: pytest replaces them inside tests.
    script = (
        "from PIL import Image; import io; "
        "from lambda_function.datapath.preprocessing import DecodeLimits, prepare_image; "
        "buffer = io.BytesIO(); Image.new('L', (900, 900)).save(buffer, 'PNG'); "  # over half the cap, under it
        "print(prepare_image(buffer.getvalue(), (64, 64), DecodeLimits(max_pixels=1_000_000)).shape)"
    )
    completed = subprocess.run(
        [sys.executable, "-W", "default", "-c", script], cwd=REPO_DIR, capture_output=True, text=True, check=True
    )

    assert completed.stdout.strip() == "(64, 64, 3)"
    assert "DecompressionBombWarning" not in completed.stderr


# Memory: only the decoder's buffer is ever full size


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "1"])
def test_a_large_image_is_shrunk_right_after_decoding_with_the_same_colours(mode):
    """Left half opaque mid-grey (or white for bilevel), right half transparent where the mode has alpha."""
    side = 2000
    image = Image.new(mode, (side, side))
    if mode == "P":
        image.putpalette([128, 128, 128, 0, 0, 0] + [0] * 762)
        image.paste(1, (side // 2, 0, side, side))
        data = encode(image, "PNG", transparency=1)
    else:
        grey = {"RGBA": (128, 128, 128, 255), "LA": (128, 255), "I;16": 128 * 257, "1": 1}[mode]
        image.paste(grey, (0, 0, side // 2, side))
        data = encode(image, "PNG")

    result = pixels(data)

    left, right = result[:, : SIZE[0] // 2 - 2], result[:, SIZE[0] // 2 + 2 :]
    expected_left = 255 if mode == "1" else 128
    expected_right = 255 if mode in {"RGBA", "LA", "P"} else 0
    assert np.abs(left.astype(int) - expected_left).max() <= 1
    assert np.abs(right.astype(int) - expected_right).max() <= 1


def test_an_image_that_would_not_fit_the_memory_budget_is_refused_before_decoding():
    data = encode(Image.new("RGBA", (4000, 4000)), "WEBP", lossless=True)  # 16 M pixels, 16 bytes each to decode

    with pytest.raises(TooMuchDecodeMemory, match="MB to decode"):
        pixels(data, DecodeLimits(max_pixels=50_000_000, memory_budget_bytes=200_000_000))
    assert pixels(data, DecodeLimits(max_pixels=50_000_000, memory_budget_bytes=300_000_000)).shape[2] == 3


def test_a_progressive_jpeg_with_thousands_of_scans_is_refused_before_decoding():
    data = progressive_jpeg_with_repeated_scans(5000)

    started = time.perf_counter()
    with pytest.raises(ImageTooComplex):
        decode_image(data, LIMITS)

    assert time.perf_counter() - started < 1  # refused from the markers, not after decoding 5,000 scans


@pytest.mark.parametrize("where", ["after APP0", "before every scan"])
@pytest.mark.parametrize("junk", [b"\x00", b"\x00" * 7, b"\x12\xff\x00\x34"], ids=["one-byte", "bytes", "stuffed"])
def test_junk_where_a_marker_should_be_hides_no_scan_from_the_limits(junk, where):
    """libjpeg skips such bytes to the next marker and decodes on: the scans behind them are counted all the same."""
    readable = with_junk_between_segments(progressive_jpeg_with_repeated_scans(3), junk, where)
    hostile = progressive_jpeg_with_repeated_scans(1500)
    hidden = with_junk_between_segments(hostile, junk, where)

    assert Image.open(io.BytesIO(readable)).convert("RGB").size == (512, 512)  # what libjpeg makes of it
    assert jpeg_scan_count(hidden, stop_after=10_000) == jpeg_scan_count(hostile, stop_after=10_000) > 1500
    with pytest.raises(ImageTooComplex):
        decode_image(hidden, LIMITS)


LOSSLESS_JPEG = REPO_DIR / "tests" / "support" / "data" / "lossless-320x240.jpg"


@pytest.mark.parametrize("jpeg_draft", [True, False])
def test_a_lossless_jpeg_decodes_at_full_size_as_pillow_decodes_it(jpeg_draft):
    """libjpeg cannot decode a lossless JPEG (SOF3) at a reduced scale: it is decoded whole and shrunk after."""
    data = LOSSLESS_JPEG.read_bytes()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((64, 48), RESAMPLING))

    pixels = prepare_image(data, (64, 48), replace(LIMITS, jpeg_draft=jpeg_draft))

    assert pixels.shape == (48, 64, 3)
    assert np.abs(pixels.astype(int) - expected.astype(int)).mean() < 2


def test_a_progressive_jpeg_as_encoders_write_it_decodes():
    data = progressive_jpeg_with_repeated_scans(20)  # about 30 scans: more than encoders write, within the limit

    assert jpeg_scan_count(data, stop_after=1000) == 30
    assert decode_image(data, LIMITS).size == (512, 512)


def test_a_progressive_jpeg_whose_scans_would_walk_too_many_pixels_is_refused_before_decoding():
    data = progressive_jpeg_with_repeated_scans(85, side_px=4000)  # 95 scans of 16 M pixels: 1.52 billion

    with pytest.raises(ImageTooComplex, match="scanned pixels"):
        decode_image(data, LIMITS)


class SteppingClock:
    """A clock that stands still for its first `still` reads (all of them if None), then jumps 100 s: a decode
    that runs out of time at a known step, whatever the machine's speed."""

    def __init__(self, still: int | None = None) -> None:
        self.still = still
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return 0.0 if self.still is None or self.reads <= self.still else 100.0


INPUT = (TEST_INPUT_SIZE_PX, TEST_INPUT_SIZE_PX)
NOISE_PNG_SIDE_PX = 1200  # incompressible: about 4.3 MB, which the decoder reads in some 70 pieces


@pytest.fixture(scope="module")
def noise_png() -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, (NOISE_PNG_SIDE_PX, NOISE_PNG_SIDE_PX, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG", compress_level=1)


def test_the_decode_clock_is_read_at_every_read_the_decoder_makes_of_the_file(noise_png):
    clock = SteppingClock()
    timed = DecodeLimits(max_pixels=50_000_000, time_budget_s=5)

    prepare_image(noise_png, INPUT, timed, Deadline.never(clock))

    assert clock.reads > len(noise_png) // 65536


def test_the_decode_clock_is_read_every_kilobyte_of_a_jpeg_of_many_scans():
    """Thousands of scans of a flat image fit in one 64 KB read, which the clock could not cut."""
    data = progressive_jpeg_with_repeated_scans(90, side_px=3000)  # 55 KB
    clock = SteppingClock()

    prepare_image(data, INPUT, DecodeLimits(max_pixels=50_000_000, time_budget_s=5), Deadline.never(clock))

    assert clock.reads > len(data) // MULTI_SCAN_JPEG_READ_BYTES


def test_a_decode_that_runs_out_of_its_time_budget_midway_stops_at_its_next_step(noise_png):
    timed = DecodeLimits(max_pixels=50_000_000, time_budget_s=5)
    whole = SteppingClock()
    prepare_image(noise_png, INPUT, timed, Deadline.never(whole))
    midway = SteppingClock(still=whole.reads // 2)

    with pytest.raises(ImageTooComplex, match="more than 5 s to decode"):
        prepare_image(noise_png, INPUT, timed, Deadline.never(midway))

    assert midway.reads == whole.reads // 2 + 1  # the first step that saw the time was the last


def test_a_decode_past_the_requests_deadline_stops_with_deadline_exceeded(noise_png):
    timed = DecodeLimits(max_pixels=50_000_000, time_budget_s=5)

    with pytest.raises(DeadlineExceeded):
        prepare_image(noise_png, INPUT, timed, Deadline(1.0, SteppingClock(still=10)))
    with pytest.raises(DeadlineExceeded):
        prepare_image(noise_png, INPUT, LIMITS, Deadline.after(-1))


def test_without_a_time_budget_or_deadline_a_decode_is_never_cut(noise_png):
    """Training decodes its datasets so, on any clock."""
    assert prepare_image(noise_png, INPUT, LIMITS, Deadline.never(SteppingClock(still=0))).shape[:2] == INPUT


def test_a_tiff_cut_into_tens_of_thousands_of_strips_is_refused_before_decoding():
    from PIL import TiffImagePlugin

    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[278] = 1  # one row per strip
    buffer = io.BytesIO()
    Image.new("L", (20, 20_000), 128).save(buffer, "TIFF", tiffinfo=info)

    with pytest.raises(ImageTooComplex, match="20,000 strips"):
        decode_image(buffer.getvalue(), LIMITS)


@pytest.mark.parametrize(
    ("mode", "size"),
    [("RGBA", (1, 25_000_000)), ("RGBA", (25_000_000, 1)), ("P", (493, 50_000)), ("P", (50_000, 493))],
    ids=["RGBA 1xN", "RGBA Nx1", "palette 493xN", "palette Nx493"],
)
def test_narrow_and_tall_images_stay_within_the_decode_memory_budget(tmp_path, mode, size):
    """Measured in a fresh process, as `make bench` does (benchmarks/decode_memory.py): what decoding added."""
    from benchmarks.decode_memory import measure_one
    from lambda_function.datapath.preprocessing import DECODE_MEMORY_BUDGET_BYTES

    image = Image.new(mode, size, 7 if mode == "P" else (128, 128, 128, 200))
    path = tmp_path / "narrow.png"
    image.save(path, "PNG", **({"transparency": 0} if mode == "P" else {}))
    measured = measure_one(path)

    assert measured["outcome"] in ("decoded", "413 too_much_decode_memory")  # refused before decoding, or fits
    assert measured["added_mb"] * 1024 * 1024 < DECODE_MEMORY_BUDGET_BYTES


@pytest.mark.parametrize(("orientation", "expected"), [(1, (1600, 1200)), (6, (1200, 1600))])
def test_a_decoded_photo_keeps_its_own_upright_size_whatever_size_its_pixels_were_decoded_at(orientation, expected):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.new("RGB", (1600, 1200), (90, 60, 30)), "JPEG", exif=exif.tobytes())

    image = decode_image(data, DecodeLimits(max_pixels=50_000_000), target_size_px=(128, 128))

    assert max(image.size) < 1600  # draft-decoded
    assert image.info["source_size_px"] == expected
