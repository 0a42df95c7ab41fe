"""REST refusals decided from the headers in uvicorn's protocol: one prepared write, no request task, the body
never read, the connection still usable; what is admitted reaches the app having taken one token, not two."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from honed.serve.access import AccessPolicy, token_hash
from honed.serve.http import ADMITTED, HttpApp, early_refusals, required_access
from honed.serve.server import build
from tests.serve.test_batching import FakeClock

QUIET, NOISY = "quiet-token-0001", "noisy-token-0002"


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def pause_reading(self) -> None:
        return

    def resume_reading(self) -> None:
        return


def _request(token: str | None, body: bytes = b'{"inputs": []}', *, close: bool = False) -> bytes:
    head = "POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += f"Authorization: Bearer {token}\r\n" if token else ""
    head += "Connection: close\r\n" if close else ""
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _setup() -> tuple[Any, HttpApp, list[dict[str, Any]], _Transport, ServerState]:
    policy = AccessPolicy.from_dict(
        {
            "principals": [
                {"name": n, "token_sha256": token_hash(t), "models": ["*"], "actions": ["infer"]}
                for n, t in (("quiet", QUIET), ("noisy", NOISY))
            ],
            "limits": {"principals": {"noisy": {"rps": 1, "burst": 1}}},
        }
    )
    dataplane = build(None, access=policy)
    dataplane.limiter._clock = FakeClock()  # no refill while the test runs
    app = HttpApp(dataplane)
    seen: list[dict[str, Any]] = []

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(asgi, lifespan="off", access_log=False)
    state = ServerState()
    protocol = early_refusals(app)(config=config, server_state=state, app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, app, seen, transport, state


def test_a_refusal_is_one_write_with_no_task_and_the_connection_goes_on() -> None:
    asyncio.run(_one_write_no_task())


async def _one_write_no_task() -> None:
    protocol, app, seen, transport, state = _setup()
    protocol.data_received(_request(NOISY))  # takes the noisy principal's one token
    await asyncio.sleep(0.01)
    assert len(seen) == 1 and seen[0][ADMITTED][1].name == "noisy"
    transport.writes.clear()
    # Refused twice on one connection, the second request pipelined behind the first, bodies and all.
    protocol.data_received(_request(NOISY, b"x" * 5000) + _request(None))
    assert not state.tasks  # no request task, no ASGI call: the answers were written from the protocol
    assert len(transport.writes) == 2
    limited, missing = transport.writes
    assert limited.startswith(b"HTTP/1.1 429 ") and b"\r\nretry-after: 1\r\n" in limited
    assert b"over its rate limit" in limited and b"connection: close" not in limited
    assert missing.startswith(b"HTTP/1.1 401 ") and b'www-authenticate: Bearer realm="honed"' in missing
    metrics = app.dataplane.render_metrics()[0].decode()
    assert 'reason="missing"' in metrics and 'principal="noisy"' in metrics
    protocol.data_received(_request(QUIET))  # and the connection still serves an admitted request
    await asyncio.sleep(0.01)
    assert len(seen) == 2 and seen[1][ADMITTED][1].name == "quiet"
    assert not transport.closed


def test_a_refusal_to_a_closing_client_says_so_and_closes() -> None:
    asyncio.run(_closing())


async def _closing() -> None:
    protocol, _, _, transport, _ = _setup()
    protocol.data_received(_request("no-such-token", close=True))
    assert transport.writes[0].startswith(b"HTTP/1.1 401 ") and b"connection: close\r\n" in transport.writes[0]
    assert transport.closed


def test_the_early_decision_names_what_the_app_checks() -> None:
    assert required_access("POST", "/v2/models/m/infer") == ("infer", "m")
    assert required_access("POST", "/v2/models/m/versions/2/infer") == ("infer", "m")
    assert required_access("GET", "/v2/models/m/versions/2") == ("read", "m")
    assert required_access("POST", "/v2/repository/models/m/load") == ("admin", "m")
    assert required_access("POST", "/v2/repository/index") == ("read", None)
    assert required_access("GET", "/metrics") == ("metrics", None)
    for method, path in [("GET", "/v2/health/ready"), ("GET", "/v2/health/live"), ("GET", "/elsewhere")]:
        assert required_access(method, path) is None  # open, or answered 404 without looking at credentials
    assert required_access("GET", "/v2/repository/index") is None  # 405 first, as the app answers
