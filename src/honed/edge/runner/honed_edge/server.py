"""A KServe V2 REST subset on the standard library's HTTP server: health, server and model metadata, JSON infer.

    GET  /v2/health/live, /v2/health/ready      200 (ready once the model is loaded)
    GET  /v2                                    server metadata
    GET  /v2/models/NAME[/ready]                model metadata (inputs, outputs, datatypes, shapes)
    POST /v2/models/NAME/infer                  JSON tensors in, JSON tensors out

A body that is not JSON, or inputs that do not fit the model, is 400 with ``{"error": ...}``; an unknown path or
model 404; a body over ``max_body`` bytes 413. One request runs at a time per thread; SIGTERM stops accepting,
lets the requests in flight finish and exits.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .bundle import InputError
from .session import Model, RunError
from .tensors import NUMPY_TO_V2, decode_v2, encode_v2

MAX_BODY = 64 << 20


def _tensor_metadata(tensors: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "datatype": NUMPY_TO_V2.get(t.dtype, "BYTES"),
            "shape": [-1 if d is None else d for d in t.shape],
        }
        for t in tensors
    ]


class EdgeServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], model: Model, *, max_body: int = MAX_BODY) -> None:
        super().__init__(address, _Handler)
        self.model = model
        self.max_body = max_body
        self.version = model.bundle.files.get(model.bundle.model_file, "")[:12]


class _Handler(BaseHTTPRequestHandler):
    server: EdgeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # requests are not logged line by line
        return

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

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
            self._reply(HTTPStatus.OK, {"name": "honed_edge", "version": "1", "extensions": []})
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
                        "platform": f"onnxruntime_{model.bundle.model_format}",
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
        try:
            body = json.loads(raw)
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {exc}")
            return
        try:
            model = self.server.model
            outputs = model.run(decode_v2(body))
        except InputError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        except RunError as exc:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))
            return
        reply: dict[str, Any] = {"model_name": model.bundle.name, "model_version": self.server.version}
        if isinstance(body.get("id"), str):
            reply["id"] = body["id"]
        reply["outputs"] = encode_v2(outputs)
        self._reply(HTTPStatus.OK, reply)


def serve(model: Model, host: str, port: int) -> None:
    """Serve until SIGTERM or Ctrl-C; prints one ``listening on http://HOST:PORT`` line once ready."""
    server = EdgeServer((host, port), model)

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
        server.server_close()
    print("stopped", file=sys.stderr, flush=True)
