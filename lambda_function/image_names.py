"""Which file and object names are photos: for listing folders and buckets, before any byte is read.

The content decides what an image is (the decoder's allowlist of formats); the name only decides what is worth
reading. Kept apart from the decoder, so that listing a bucket (`backfill`, `batch_job`) imports no Pillow.
"""

from __future__ import annotations

# The file name endings of the formats the decoder reads (`datapath.preprocessing.ALLOWED_FORMATS`).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"})


def is_image_name(name: str) -> bool:
    """Whether a file or object name ends like a photo the decoder reads, in any case (`IMG_0001.JPEG` too).

    The one test of a name, for the S3 tagger, the backfill's listing and the training folders alike; the S3
    trigger watches the whole prefix and leaves the choice to this function.
    """
    return name.lower().endswith(tuple(IMAGE_SUFFIXES))
