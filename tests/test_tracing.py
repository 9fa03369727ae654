"""OpenTelemetry traces: exported over OTLP/HTTP to a receiver this test runs; a run is one trace.

A request's server span → the run's ``invoke_agent`` span (in whichever process executes it: the run carries
the request's traceparent) → the model call's ``chat`` span with ``gen_ai.usage.*``; ``execute_tool`` spans for
server-side tools. Message content never appears in any attribute.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.run_helpers import (
    WorkerProcess,
    fresh_database,
    marker,
    new_assistant,
    new_thread,
    sdk,
    serve,
    server_env,
    wait_run,
    wait_until,
)
from tests.servers import LiveProcess


class Receiver:
    """A minimal OTLP/HTTP trace receiver: POST /v1/traces with a protobuf ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.lock:
                    for resource_spans in request.resource_spans:
                        service = next((a.value.string_value for a in resource_spans.resource.attributes
                                        if a.key == "service.name"), "")
                        for scope_spans in resource_spans.scope_spans:
                            for span in scope_spans.spans:
                                receiver.spans.append({
                                    "name": span.name, "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                                    "parent": span.parent_span_id.hex(), "service": service,
                                    "attributes": {a.key: _value(a.value) for a in span.attributes}})
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def trace_of(self, run_id: str) -> list[dict[str, Any]]:
        with self.lock:
            agent = next((s for s in self.spans if s["attributes"].get("assistd.run_id") == run_id), None)
            return [] if agent is None else [s for s in self.spans if s["trace_id"] == agent["trace_id"]]


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """One collector for the module: each test finds its own run's trace in it (``trace_of``)."""
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def traced(database_url: str, upstream: LiveProcess, tmp_path_factory: pytest.TempPathFactory,
           receiver: Receiver) -> Iterator[LiveProcess]:
    """One serve exporting to ``receiver`` for the tests that need no worker, on a database of its own (these
    tests call it keyless)."""
    tmp = tmp_path_factory.mktemp("traced")
    with fresh_database(database_url, tmp) as url:
        with serve(server_env(url, upstream, tmp, **otel_env(receiver))) as proc:
            yield proc


def otel_env(receiver: Receiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}


def ancestors(by_id: dict[str, dict[str, Any]], span: dict[str, Any]) -> list[str]:
    """The ids above ``span`` (the framework may add its own spans between ours)."""
    out = []
    while span["parent"] in by_id:
        out.append(span["parent"])
        span = by_id[span["parent"]]
    return out


def check_run_trace(receiver: Receiver, run: dict[str, Any], secret: str) -> list[dict[str, Any]]:
    spans = wait_until(lambda: (s := receiver.trace_of(run["id"])) and any(
        x["name"].startswith("chat ") for x in s) and any(x["name"].startswith("POST ") for x in s) and s,
        timeout=30, what="the run's trace")
    by_id = {s["span_id"]: s for s in spans}
    server = next(s for s in spans if s["name"] == "POST /v1/threads/{thread_id}/runs")
    agent = next(s for s in spans if s["name"].startswith("invoke_agent"))
    chat = next(s for s in spans if s["name"].startswith("chat "))
    assert server["span_id"] in ancestors(by_id, agent), [(x["name"], x["span_id"], x["parent"]) for x in spans]
    assert by_id[chat["parent"]]["name"].startswith("invoke_agent")
    assert agent["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert agent["attributes"]["gen_ai.conversation.id"] == run["thread_id"]
    assert agent["attributes"]["gen_ai.agent.id"] == run["assistant_id"]
    assert chat["attributes"]["gen_ai.operation.name"] == "chat"
    assert chat["attributes"]["gen_ai.request.model"] == run["model"]
    assert chat["attributes"]["gen_ai.usage.output_tokens"] == run["usage"]["completion_tokens"]
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == run["usage"]["prompt_tokens"]
    assert server["attributes"]["http.response.status_code"] == 200
    assert all(secret not in str(s["attributes"]) for s in spans)  # no content recorded
    return spans


def test_a_run_is_one_trace(traced: LiveProcess, receiver: Receiver) -> None:
    secret = "private-" + marker()
    client = sdk(traced)
    thread = new_thread(client, f"{secret} [reply: traced {secret}]")
    run = client.beta.threads.runs.create(thread.id, assistant_id=new_assistant(client).id)
    done = wait_run(client, thread.id, run.id, "completed")
    check_run_trace(receiver, done, secret)


def test_a_run_executed_by_a_worker_continues_the_request_trace(
        database_url: str, is_postgres: bool, upstream: LiveProcess, tmp_path: Path, receiver: Receiver) -> None:
    if not is_postgres:
        pytest.skip("`assistd worker` runs beside `serve` on PostgreSQL only")
    secret = "private-" + marker()
    with fresh_database(database_url, tmp_path) as url:
        with serve(server_env(url, upstream, tmp_path, ASSISTD_WORKERS="0", **otel_env(receiver))) as api:
            client = sdk(api)
            thread = new_thread(client, f"{secret} [reply: traced {secret}]")
            run = client.beta.threads.runs.create(thread.id, assistant_id=new_assistant(client).id)
            with WorkerProcess(server_env(url, upstream, tmp_path, ASSISTD_WORKERS="2", **otel_env(receiver))):
                done = wait_run(client, thread.id, run.id, "completed", timeout=30)
                spans = check_run_trace(receiver, done, secret)
    services = {s["name"].split(" ")[0]: s["service"] for s in spans}
    assert services["POST"] == "assistd" and services["invoke_agent"] == "assistd-worker"


def test_a_run_cancelled_mid_answer_exports_its_chat_and_agent_spans(traced: LiveProcess, receiver: Receiver) -> None:
    client = sdk(traced)
    thread = new_thread(client, "[chunk-delay: 0.5] [reply: " + " ".join(["word"] * 40) + "]")
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=new_assistant(client).id) as events:
        for event in events:
            if event.event == "thread.run.created":
                run_id = event.data.id
            if event.event == "thread.message.delta":  # mid-answer: the model is still streaming
                client.beta.threads.runs.cancel(run_id, thread_id=thread.id)
                break
    wait_run(client, thread.id, run_id, "cancelled")
    spans = wait_until(lambda: (s := receiver.trace_of(run_id)) and any(
        x["name"].startswith("chat ") for x in s) and s, timeout=30, what="the cancelled run's chat span")
    agent = next(s for s in spans if s["name"].startswith("invoke_agent"))
    chat = next(s for s in spans if s["name"].startswith("chat "))
    assert chat["parent"] == agent["span_id"]
    assert agent["attributes"]["assistd.run_status"] == "cancelled"
    assert chat["attributes"]["error.type"] == "cancelled"
    assert chat["attributes"]["gen_ai.usage.input_tokens"] > 0  # what is known: the prompt, what streamed
    assert chat["attributes"]["gen_ai.usage.output_tokens"] >= 1
