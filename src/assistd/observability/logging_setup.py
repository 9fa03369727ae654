"""Process logging: one JSON object per line (``ASSISTD_LOG_FORMAT=json``) or readable text.

``auto`` (the default) writes text to a terminal and JSON otherwise (a file, journald, a container log).
Every line carries the ids of ``context.current()``. Secrets configured in this process (API keys, the
upstream key) are replaced by ``[redacted]`` wherever they would appear: message content and keys are
never logged on purpose, and this is the net under that rule.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson

from assistd.observability import context

# LogRecord's own attributes: anything else on a record came from ``extra=`` and is written as a field.
# (uvicorn adds ``color_message``: its message with terminal colours.)
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        now = record.created
        out: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(context.current())
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = context.current()
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                fields[key] = value
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return line


class RedactSecrets(logging.Filter):
    """Replaces known secret strings in a record's message and arguments."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Short values ("not-needed", "x") would redact ordinary words; real keys are long.
        self.secrets = sorted({s for s in secrets if len(s) >= 12}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                for secret in self.secrets:
                    message = message.replace(secret, "[redacted]")
                record.msg, record.args = message, None
        return True


def configure(level: str, log_format: str, secrets: Iterable[str] = ()) -> None:
    """Installs the root handler (stderr) for this process; uvicorn's own loggers go through it too."""
    fmt = log_format.lower()
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Every upstream request would otherwise be logged at INFO by the HTTP client.
    for noisy in ("httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # uvicorn's access log is replaced by ours (observability/http.py); its other loggers propagate here.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True


