"""A KServe V2 REST subset on the standard library's HTTP server: health, server and model metadata, infer.

    GET  /v2/health/live, /v2/health/ready      200 (ready once the model is loaded)
    GET  /v2                                    server metadata
    GET  /v2/models/NAME[/ready]                model metadata (inputs, outputs, datatypes, shapes)
    POST /v2/models/NAME/infer                  JSON tensors, or the binary tensor extension, in and out

Every error is ``{"error": ...}``: a body that is not JSON, or inputs that do not fit the model, 400; an unknown path
or model 404; a body over ``max_body`` bytes 413; a connection over capacity 503. Capacity is fixed: ``workers``
threads serve connections taken from a backlog of at most ``backlog`` more; a connection beyond both is answered 503
by the accepting thread and closed, so no thread is ever started per request. SIGTERM stops accepting (new
connections are refused), lets the connections already taken finish their request, and exits 0.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from .bundle import InputError
from .session import Model, RunError
from .tensors import NUMPY_TO_V2, binary_outputs, decode_v2, encode_v2, split_body

PLATFORMS = {"onnx": "onnxruntime_onnx", "ort": "onnxruntime_ort", "openvino-ir": "openvino_ir"}

MAX_BODY = 64 << 20
WORKERS = 4
BACKLOG = 16
IDLE_S = 30.0
"""How long a kept-alive connection may sit idle (or a client stall mid-request) before it is closed."""


def _tensor_metadata(tensors: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "datatype": NUMPY_TO_V2.get(t.dtype, "BYTES"),
            "shape": [-1 if d is None else d for d in t.shape],
        }
        for t in tensors
    ]


class EdgeServer(HTTPServer):
    """The model behind ``workers`` threads and a backlog of ``backlog`` connections; nothing beyond that."""

    def __init__(
        self,
        address: tuple[str, int],
        model: Model,
        *,
        max_body: int = MAX_BODY,
        workers: int = WORKERS,
        backlog: int = BACKLOG,
    ) -> None:
        if workers < 1 or backlog < 0:
            raise ValueError("workers must be >= 1 and backlog >= 0")
        super().__init__(address, _Handler)
        self.model = model
        self.max_body = max_body
        self.capacity = workers + backlog
        self.version = model.bundle.files.get(model.bundle.model_file, "")[:12]
        self.draining = False
        self._taken = 0
        self._lock = threading.Lock()
        self._connections: queue.Queue[tuple[socket.socket, Any] | None] = queue.Queue()
        self._workers = [threading.Thread(target=self._work, name=f"worker-{i}") for i in range(workers)]
        for worker in self._workers:
            worker.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the connection to a worker, or answer 503 here when every worker and backlog place is taken."""
        with self._lock:
            admitted = self._taken < self.capacity
            if admitted:
                self._taken += 1
        if admitted:
            self._connections.put((request, client_address))
            return
        with contextlib.suppress(OSError):
            _Refusal(request, client_address, self)
        self.shutdown_request(request)

    def _work(self) -> None:
        while (item := self._connections.get()) is not None:
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:  # a broken connection ends that connection only
                pass
            finally:
                self.shutdown_request(request)
                with self._lock:
                    self._taken -= 1

    def drain(self) -> None:
        """After ``shutdown``: close the listening socket, finish every connection taken, stop the workers."""
        self.draining = True
        self.socket.close()
        for _ in self._workers:
            self._connections.put(None)
        for worker in self._workers:
            worker.join()


class _Handler(BaseHTTPRequestHandler):
    server: EdgeServer
    protocol_version = "HTTP/1.1"
    timeout = IDLE_S
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall between them

    def log_message(self, format: str, *args: Any) -> None:  # requests are not logged line by line
        return

    def _reply(self, status: HTTPStatus, body: dict[str, Any], chunks: list[bytes] | None = None) -> None:
        """``body`` as JSON, followed by the binary ``chunks`` (with ``Inference-Header-Content-Length``) if any."""
        payload = json.dumps(body).encode()
        self.send_response(status)
        if chunks:
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Inference-Header-Content-Length", str(len(payload)))
        else:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload) + sum(map(len, chunks or []))))
        if self.server.draining:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        for chunk in chunks or []:
            self.wfile.write(chunk)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._reply(status, {"error": message})

    def _model_path(self, parts: list[str]) -> str | None:
        """The rest of a /v2/models/NAME/... path, or None (after a 404) when NAME is not this bundle's model."""
        name = self.server.model.bundle.name
        if parts[2] != name:
            self._error(HTTPStatus.NOT_FOUND, f"unknown model {parts[2]!r}; this server has {name!r}")
            return None
        return "/".join(parts[3:])

    def do_GET(self) -> None:
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        model = self.server.model
        if parts == ["v2", "health", "live"] or parts == ["v2", "health", "ready"]:
            self._reply(HTTPStatus.OK, {"live": True} if parts[-1] == "live" else {"ready": True})
        elif parts == ["v2"]:
            self._reply(HTTPStatus.OK, {"name": "honed_edge", "version": "1", "extensions": ["binary_tensor_data"]})
        elif len(parts) >= 3 and parts[:2] == ["v2", "models"]:
            rest = self._model_path(parts)
            if rest is None:
                return
            if rest == "ready":
                self._reply(HTTPStatus.OK, {"name": model.bundle.name, "ready": True})
            elif rest == "":
                self._reply(
                    HTTPStatus.OK,
                    {
                        "name": model.bundle.name,
                        "versions": [self.server.version],
                        "platform": PLATFORMS.get(model.bundle.model_format, model.bundle.model_format),
                        "inputs": _tensor_metadata(model.bundle.inputs),
                        "outputs": _tensor_metadata(model.bundle.outputs),
                    },
                )
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such path {self.path}")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such path {self.path}")

    def do_POST(self) -> None:
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if not (len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "infer"):
            self._error(HTTPStatus.NOT_FOUND, f"no such path {self.path}; infer is POST /v2/models/NAME/infer")
            return
        if self._model_path(parts) is None:
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(HTTPStatus.LENGTH_REQUIRED, "the request needs a Content-Length")
            return
        if length > self.server.max_body:
            self.close_connection = True
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is {length} bytes; at most {self.server.max_body}"
            )
            return
        raw = self.rfile.read(length)
        model = self.server.model
        try:
            header_length = self.headers.get("Inference-Header-Content-Length")
            try:
                split = None if header_length is None else int(header_length)
            except ValueError:
                raise InputError(
                    f"Inference-Header-Content-Length must be a whole number, got {header_length!r}"
                ) from None
            body, binary = split_body(raw, split)
            outputs = model.run(decode_v2(body, binary))
        except InputError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        except RunError as exc:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))
            return
        reply: dict[str, Any] = {"model_name": model.bundle.name, "model_version": self.server.version}
        if isinstance(body.get("id"), str):
            reply["id"] = body["id"]
        reply["outputs"], chunks = encode_v2(outputs, binary_outputs(body))
        self._reply(HTTPStatus.OK, reply, chunks)


class _Refusal(_Handler):
    """Reads one request (and a small body, so closing does not reset the client) and answers 503."""

    timeout = 1.0

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def _over_capacity(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if 0 < length <= 1 << 20:
            self.rfile.read(length)
        self._error(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"the server is at capacity ({self.server.capacity} connections: workers and backlog); retry later",
        )

    do_GET = do_POST = _over_capacity


def serve(model: Model, host: str, port: int, *, workers: int = WORKERS, backlog: int = BACKLOG) -> None:
    """Serve until SIGTERM or Ctrl-C, then drain; prints one ``listening on http://HOST:PORT`` line once ready."""
    server = EdgeServer((host, port), model, workers=workers, backlog=backlog)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    bound_host, bound_port = server.server_address[:2]
    print(f"listening on http://{bound_host!s}:{bound_port} model {model.bundle.name}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.drain()
    print("stopped", file=sys.stderr, flush=True)
