"""The data path as one straight line: image source -> bytes -> pixels -> probabilities -> answer.

`BreedService` owns the pieces built at init (settings, the LiteRT classifier, the URL fetcher) and does no
per-request setup; the API layer only parses requests and shapes responses around it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit

from lambda_function.datapath.inference import Classifier, Coat, Prediction
from lambda_function.datapath.preprocessing import DecodeLimits, prepare_image
from lambda_function.datapath.uploads import decode_base64_image
from lambda_function.errors import ClassifierError, DeadlineExceeded, ServerBusy
from lambda_function.fetching.fetch import Resolver, SafeFetcher, system_resolver
from lambda_function.observability import logger, record_metric, tracer
from lambda_function.request_deadline import Deadline
from lambda_function.settings import Settings


@dataclass(frozen=True)
class ClassifiedImage:
    predictions: list[Prediction]
    cat_detected: bool | None
    breed_identified: bool | None
    coat: Coat | None
    description: str | None
    preprocessing_ms: float
    inference_ms: float


class Slots:
    """A count of things in flight with a capacity: taken at once or until a deadline, given back from any
    thread, and readable (readiness reports a full one). A slot is held for a block (`held`), so that no path
    out of the work, an error or a deadline, can skip giving it back."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._taken = 0
        self._freed = threading.Condition()

    def take(self, deadline: Deadline | None = None) -> bool:
        """Take a slot, waiting until `deadline` for one to be given back (None: not waiting at all). False if
        none came."""
        timeout_s = 0.0 if deadline is None else deadline.wait_s()
        with self._freed:
            if not self._freed.wait_for(lambda: self._taken < self.capacity, timeout=timeout_s):
                return False
            self._taken += 1
            return True

    def give_back(self) -> None:
        with self._freed:
            self._taken -= 1
            self._freed.notify()

    @contextmanager
    def held(self, refusal: ClassifierError, deadline: Deadline | None = None) -> Iterator[None]:
        """Hold a slot for the block, taken as `take(deadline)` does.

        Raises:
            ClassifierError: `refusal`, when no slot came.
        """
        if not self.take(deadline):
            raise refusal
        try:
            yield
        finally:
            self.give_back()

    @property
    def free(self) -> int:
        with self._freed:
            return self.capacity - self._taken

    @property
    def full(self) -> bool:
        return self.free <= 0


class BreedService:
    """Classifies images given as bytes, base64 or URL with one loaded model."""

    def __init__(
        self,
        settings: Settings,
        resolver: Resolver = system_resolver,
        processes: int = 1,
        url_fetches: Slots | None = None,
    ) -> None:
        """`processes`: how many serving processes share the container (the HTTP server's workers; 1 on Lambda
        and in the CLI), which the memory each may plan on for decoding follows. `url_fetches`: the slots URL
        fetches take while they download (the HTTP server's, so that slow upstreams cannot hold every thread);
        None for no limit (Lambda answers one request at a time)."""
        self.settings = settings
        self.url_fetches = url_fetches
        self.classifier = Classifier(settings.model_path, num_threads=settings.inference_threads)
        self.fetcher = SafeFetcher(settings.fetch, resolver=resolver)
        self._limits = DecodeLimits(
            max_pixels=settings.max_image_pixels,
            jpeg_draft=settings.jpeg_draft,
            time_budget_s=settings.decode_time_budget_s,
        )
        # Decoding and inference are CPU work, and a decode may take the decoder's whole memory budget: a server
        # with many requests in flight (most of them waiting on URLs) decodes only as many images at once as the
        # container's CPUs and memory allow, over all its processes.
        self.decode_slots = settings.decode_slots(processes, self._limits.memory_budget_bytes)
        self.compute_slots = Slots(self.decode_slots)
        if not settings.container.fits_one_decode_per_process(processes, self._limits.memory_budget_bytes):
            logger.warning(
                "the memory limit does not hold one decode per process",
                extra={"memory_bytes": settings.container.memory_bytes, "processes": processes},
            )
        card = self.classifier.card
        logger.info(
            "model loaded",
            extra={
                "model_name": card.name,
                "model_version": card.version,
                "labels": len(card.labels),
                "input_px": list(self.classifier.input_size_px),
                "threads": settings.inference_threads,
                "decode_slots": self.decode_slots,
            },
        )

    @property
    def saturation(self) -> str | None:
        """What every slot of this process is taken by, if one kind is (URL fetches, decodes); None otherwise.
        The HTTP server's readiness reports it, so that traffic goes to other pods meanwhile."""
        if self.url_fetches is not None and self.url_fetches.full:
            return "URL fetches"
        if self.compute_slots.full:
            return "decodes"
        return None

    @tracer.capture_method(capture_response=False)
    def classify_url(self, url: str, top_k: int, deadline: Deadline | None = None) -> ClassifiedImage:
        """Fetch `url` (within the request's `deadline` too) and classify it.

        Raises:
            ServerBusy: every URL fetch slot is taken; decided here, on the parsed request, without waiting.
            ClassifierError: as `SafeFetcher.fetch` and `classify_bytes`.
        """
        deadline = deadline or Deadline.never()
        return self.classify_bytes(self._fetch(url, deadline), top_k, deadline)

    def _fetch(self, url: str, deadline: Deadline) -> bytes:
        if self.url_fetches is None:
            return self.fetcher.fetch(url, deadline)
        busy = ServerBusy("the server is busy fetching other URLs; retry in a moment, or send the image itself")
        with self.url_fetches.held(busy):
            return self.fetcher.fetch(url, deadline)

    def classify_base64(self, encoded: str, top_k: int, deadline: Deadline | None = None) -> ClassifiedImage:
        return self.classify_bytes(decode_base64_image(encoded, self.settings.max_upload_bytes), top_k, deadline)

    @tracer.capture_method(capture_response=False)
    def classify_bytes(self, data: bytes, top_k: int, deadline: Deadline | None = None) -> ClassifiedImage:
        """Decode and classify `data`, giving up when `deadline` passes: while waiting for a compute slot, or at
        the decode's next step; the slot is never held for a request past its deadline.

        Raises:
            ClassifierError: the image is refused (lambda_function.errors), or DeadlineExceeded.
        """
        deadline = deadline or Deadline.never()
        out_of_time = DeadlineExceeded("the service was decoding other images until the request's deadline")
        with self.compute_slots.held(out_of_time, deadline):
            started = time.perf_counter()
            pixels = prepare_image(data, self.classifier.input_size_px, self._limits, deadline)
            preprocessed = time.perf_counter()
            answer = self.classifier.classify(pixels, top_k)
            finished = time.perf_counter()
        preprocessing_ms = (preprocessed - started) * 1000
        inference_ms = (finished - preprocessed) * 1000
        record_metric("PreprocessingMs", MetricUnit.Milliseconds, preprocessing_ms)
        record_metric("InferenceMs", MetricUnit.Milliseconds, inference_ms)
        return ClassifiedImage(
            answer.predictions,
            answer.cat_detected,
            answer.breed_identified,
            answer.coat,
            answer.description,
            preprocessing_ms,
            inference_ms,
        )
