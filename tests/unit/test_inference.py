"""The classifier is shared by every thread of a process (the HTTP server's pool, the backfill's workers), and
LiteRT's interpreter is not: each answer must be the answer that image gets alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lambda_function.datapath.inference import Classifier
from lambda_function.datapath.preprocessing import DecodeLimits, prepare_image
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS

THREADS = 8
ROUNDS = 12


def test_answers_from_many_threads_at_once_are_each_the_serial_answer(model_path):
    classifier = Classifier(model_path, num_threads=1)
    photos = [
        prepare_image(p.read_bytes(), classifier.input_size_px, DecodeLimits(max_pixels=50_000_000))
        for p in CAT_PHOTOS[:4] + DOG_PHOTOS[:4]
    ]
    serial = [classifier.probabilities(pixels) for pixels in photos]
    assert len({answer.tobytes() for answer in serial}) == len(photos)  # distinct, so a mix-up shows

    jobs = [index for _ in range(ROUNDS) for index in range(len(photos))]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        answers = list(pool.map(lambda index: (index, classifier.probabilities(photos[index])), jobs))

    wrong = [index for index, answer in answers if not np.array_equal(answer, serial[index])]
    assert wrong == [], f"{len(wrong)} of {len(answers)} answers belonged to another image"
