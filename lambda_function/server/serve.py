"""The production HTTP server (`python -m lambda_function serve`, the image's `server` target, Kubernetes).

gunicorn manages the processes (a worker per CPU by default, restarts of crashed workers, graceful shutdown on
SIGTERM within `graceful_timeout`), and each worker runs uvicorn's event loop with the ASGI application of
`lambda_function.server.asgi`. This is the stack uvicorn's and FastAPI's documentation recommend for production;
powertools' `HttpResolverLocal`, which served before, is documented by its authors as for local development.
Each worker loads its own model and runs inference on it under the classifier's lock (one interpreter per
process), while URL fetches and uploads of that worker overlap on its thread pool. Each interpreter gets
`INFERENCE_THREADS` (every CPU by default), as on Lambda: on 2 CPUs with 2 workers that answers one client
faster than one thread per worker, at the same throughput under load (measured in docs/kubernetes.md).
"""

from __future__ import annotations

import asyncio
import math
import signal
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from lambda_function.datapath.inference import Classifier
from lambda_function.datapath.service import BreedService, Slots
from lambda_function.server.asgi import BreedServerApp
from lambda_function.server.http_protocol import protocol_for
from lambda_function.settings import DEFAULT_HOST, DEFAULT_PORT, Settings

# A worker that does not report to the master for this long is killed and replaced (a wedged process).
WORKER_HEARTBEAT_TIMEOUT_S = 60


def create_app(settings: Settings) -> BreedServerApp:
    """The ASGI application of one worker: it loads its own model at lifespan start-up. URL requests may hold
    only some of the worker's threads (each may wait on a slow upstream until the fetch deadline); the others are
    left for uploads."""
    server = settings.server

    def load_service() -> BreedService:
        url_fetches = Slots(server.max_url_fetches or server.threads_per_worker)
        return BreedService(settings, processes=server.workers, url_fetches=url_fetches)

    return BreedServerApp(server, load_service=load_service)


class QuickQuitUvicornWorker(UvicornWorker):  # type: ignore[misc]  # gunicorn and uvicorn-worker ship no types
    """uvicorn-worker's worker, with a SIGQUIT that stops it.

    gunicorn answers SIGINT (Ctrl+C) and SIGQUIT with a quick shutdown: it sends SIGQUIT to each worker. The
    stock worker's SIGQUIT handler only marks the worker as no longer alive, which uvicorn never reads
    (Kludex/uvicorn-worker#2, open), so a Ctrl+C waited the whole graceful timeout and ended in a SIGKILL. Here
    SIGQUIT tells uvicorn to exit at once, without waiting for requests in flight; SIGTERM keeps its graceful
    drain. The rest is the stock `_serve`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The connection rules (header limits and deadline, lingering close: lambda_function.server.http_protocol), with
        # the limits of the settings the server was started with.
        self.config.http = protocol_for(self.app.settings.server)

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = Server(config=self.config)

        def quit_now() -> None:
            server.should_exit = server.force_exit = True

        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, quit_now)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


class SecondTermQuitsArbiter(Arbiter):  # type: ignore[misc]  # gunicorn and uvicorn-worker ship no types
    """gunicorn's master, with a second SIGTERM that stops at once.

    The first SIGTERM starts the graceful stop (workers drain, requests in flight finish within the graceful
    timeout). gunicorn 27 lets SIGINT and SIGQUIT cut that wait short, but queues a second SIGTERM where its stop
    loop never reads it, so an operator's second `kill` (or `docker stop` repeated) did nothing. Here it counts
    as SIGQUIT: the quick shutdown, which the workers obey at once (`QuickQuitUvicornWorker`).
    """

    _terminating = False

    def signal(self, sig: int, frame: Any) -> None:
        if sig == signal.SIGTERM:
            if self._terminating:
                sig = signal.SIGQUIT
            self._terminating = True
        super().signal(sig, frame)


class GunicornServer(BaseApplication):  # type: ignore[misc]  # gunicorn and uvicorn-worker ship no types
    """gunicorn configured from `Settings` in code, so the server has no configuration file of its own."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__()

    def load_config(self) -> None:
        server = self.settings.server
        options: dict[str, Any] = {
            "bind": [self.bind],
            "workers": server.workers,
            "worker_class": QuickQuitUvicornWorker,
            "graceful_timeout": math.ceil(server.graceful_timeout_s),
            "timeout": WORKER_HEARTBEAT_TIMEOUT_S,
            "keepalive": 5,
            "accesslog": None,  # the application logs each request as JSON
            "errorlog": "-",
            "proc_name": "cat-breed-classifier",
            "control_socket_disable": True,  # gunicornc's socket is not used, and the home directory is read-only
        }
        if Path("/dev/shm").is_dir():  # the heartbeat file; the container's root filesystem is read-only
            options["worker_tmp_dir"] = "/dev/shm"
        for name, value in options.items():
            self.cfg.set(name, value)

    def load(self) -> BreedServerApp:
        return create_app(self.settings)

    def run(self) -> None:
        """BaseApplication.run, with the master that stops at once on a second SIGTERM."""
        try:
            SecondTermQuitsArbiter(self).run()
        except RuntimeError as error:
            print(f"\nError: {error}\n", file=sys.stderr, flush=True)
            sys.exit(1)


def serve(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve until SIGTERM or SIGINT.

    Raises:
        ModelContractError: the model or its sidecar is missing or malformed: checked once here, before any
            worker starts, so a bad model is one clear error rather than every worker failing its boot.
    """
    Classifier(settings.model_path, num_threads=1)  # one thread: no thread pool lives on into the fork
    GunicornServer(settings, host, port).run()
