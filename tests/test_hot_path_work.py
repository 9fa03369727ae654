"""What the fastest path does per request, counted rather than timed (docs/benchmarks.md "GET a run step").

A cached run step GET with a static key is served by 34 Python function calls through the ASGI stack
(request id, metrics, rate-limit layer, api/hot.py). These tests fail when a change adds work there that
a benchmark would only show as a slow drift: a call into FastAPI's router, reading the request's origin
(ipaddress parsing, needed only for keyless dev mode), hashing the key again, a timer per request in the
HTTP protocol, or a budget of calls overrun.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from assistd.api.http_protocol import protocol_with_header_timeout
from assistd.app import create_app
from assistd.config import Settings

KEY = "sk-hot-path-work-0123456789"
STEP = b'{"id":"step_1","object":"thread.run.step","status":"completed"}'
PATH = "/v1/threads/thread_1/runs/run_1/steps/step_1"
# Python-level calls for one cached step GET, through the whole ASGI app (34 when this was written, from
# FastAPI's entry to the last send). Raise it only for work a hot GET must do.
CALL_BUDGET = 40


def _scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": PATH, "raw_path": PATH.encode(), "root_path": "", "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {KEY}".encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}


def test_a_cached_step_get_stays_off_fastapi_and_within_its_call_budget(tmp_path: Path) -> None:
    calls: list[str] = []
    answers: list[dict[str, Any]] = []

    async def main() -> None:
        settings = Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", data_dir=tmp_path, api_keys=[KEY],
                            access_log=False, workers=0, llm_base_url="http://127.0.0.1:9/v1")
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            project = app.state.auth._static_ids[next(iter(app.state.auth._static_ids))]
            cache = app.state.step_cache
            cache.put(cache.epoch, project, "thread_1", "run_1", "step_1", STEP)

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                answers.append(message)

            await app(_scope(), receive, send)  # the first request builds the middleware stack
            answers.clear()

            def profile(frame: FrameType, event: str, _arg: Any) -> None:
                if event == "call":
                    calls.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

            scope = _scope()
            sys.setprofile(profile)
            try:
                await app(scope, receive, send)
            finally:
                sys.setprofile(None)

    asyncio.run(main())
    start, body = answers
    assert start["status"] == 200 and body["body"] == STEP
    assert any(name == b"x-request-id" for name, _ in start["headers"])
    ours = [c for c in calls if not c.endswith(":send") and not c.endswith(":receive")]  # this test's own
    assert not [c for c in ours if "/routing.py:" in c], "the hot GET went through a router"
    assert not [c for c in ours if c.endswith(":origin_of") or c.endswith(":_bearer")], \
        "a request with a static key had its origin or key parsed"
    assert len(ours) <= CALL_BUDGET, "\n".join(ours)


class _CountingLoop:
    """The running loop, counting timers armed through it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.timers = 0

    def call_later(self, delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        self.timers += 1
        return self._loop.call_later(delay, callback, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


class _Transport:
    def __init__(self) -> None:
        self.writes = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, _data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_the_head_deadline_arms_no_timer_per_request() -> None:
    """uvicorn arms its keep-alive timer once per response; the head deadline adds one sweep per server,
    not a timer per request (that cost ~2 µs of each)."""
    requests = 50

    async def app(_scope: Any, _receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    async def main() -> tuple[int, int]:
        loop = _CountingLoop(asyncio.get_running_loop())
        cls = protocol_with_header_timeout(10.0)
        config = Config(app, http=cls, log_config=None, access_log=False, proxy_headers=False)
        config.load()
        protocol = cls(config, ServerState(), {}, _loop=loop)  # type: ignore[arg-type]
        transport = _Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        for _ in range(requests):
            protocol.data_received(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            while transport.writes % 2:  # the response's head is out, its body not yet
                await asyncio.sleep(0)
            for _ in range(3):
                await asyncio.sleep(0)
        protocol.connection_lost(None)
        return loop.timers, transport.writes

    timers, writes = asyncio.run(main())
    assert writes == 2 * requests
    assert timers <= requests + 1, f"{timers} timers for {requests} requests"
