"""The fields of POST /v1/files (a multipart form, so not a pydantic body) and GET /v1/files' limit.

The form is validated field by field as parts arrive, so a bad ``purpose`` sent before the file fails the
request before the file is stored. Messages follow the hosted API's wording (see api/error_handlers.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from assistd.errors import InvalidRequest

# What a client may upload with (CreateFileRequest.purpose) …
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
# … and what the server itself may also create (OpenAIFile.purpose), e.g. code_interpreter outputs.
STORED_PURPOSES = (*UPLOAD_PURPOSES, "assistants_output", "batch_output", "fine-tune-results")

EXPIRES_MIN_SECONDS = 3600  # FileExpirationAfter.seconds: 1 hour …
EXPIRES_MAX_SECONDS = 2_592_000  # … to 30 days
FILE_FIELD = "file"
# How the official SDKs flatten ``expires_after`` into form fields (openai-python: array_format="brackets").
TEXT_FIELDS = ("purpose", "expires_after[anchor]", "expires_after[seconds]", "expires_after")
MAX_TEXT_FIELD_BYTES = 64 * 1024

LIST_LIMIT_MAX = 10_000  # GET /files: 1 to 10,000, default 10,000 (not the 1–100 of other lists)


def _supported(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def check_purpose(value: str, purposes: tuple[str, ...] = UPLOAD_PURPOSES) -> str:
    if value not in purposes:
        raise InvalidRequest(f"Invalid value: '{value[:100]}'. Supported values are: {_supported(purposes)}.",
                             param="purpose")
    return value


def _check_anchor(value: str) -> None:
    if value != "created_at":
        raise InvalidRequest(f"Invalid value: '{value[:100]}'. Supported values are: 'created_at'.",
                             param="expires_after.anchor")


def _check_seconds(value: object) -> int:
    param = "expires_after.seconds"
    if isinstance(value, str):
        text = value
        try:
            value = int(text.strip())
        except ValueError:
            raise InvalidRequest(f"Invalid '{param}': expected an integer, but got '{text[:100]}' instead.",
                                 param=param) from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"Invalid type for '{param}': expected an integer.", param=param)
    if not EXPIRES_MIN_SECONDS <= value <= EXPIRES_MAX_SECONDS:
        which, op, bound = (("below minimum", ">=", EXPIRES_MIN_SECONDS) if value < EXPIRES_MIN_SECONDS
                            else ("above maximum", "<=", EXPIRES_MAX_SECONDS))
        raise InvalidRequest(f"Invalid '{param}': integer {which} value. Expected a value {op} {bound}, "
                             f"but got {value} instead.", param=param)
    return value


@dataclass
class CreateFileForm:
    """The text fields of an upload, checked as each arrives; ``finish`` applies the cross-field rules."""

    purpose: str | None = None
    anchor: str | None = None
    seconds: int | None = None

    def add(self, name: str, value: str) -> None:
        if name == "purpose":
            self.purpose = check_purpose(value)
        elif name == "expires_after[anchor]":
            _check_anchor(value)
            self.anchor = value
        elif name == "expires_after[seconds]":
            self.seconds = _check_seconds(value)
        elif name == "expires_after":
            # Not what the SDKs send, but what a hand-written client (curl -F) naturally would: JSON.
            try:
                obj = orjson.loads(value)
            except orjson.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict):
                raise InvalidRequest("Invalid 'expires_after': expected an object with 'anchor' and 'seconds'.",
                                     param="expires_after")
            for key, item in obj.items():
                if key not in ("anchor", "seconds"):
                    raise InvalidRequest(f"Unrecognized request argument supplied: expires_after.{key}",
                                         param=f"expires_after.{key}")
                if key == "anchor":
                    self.add("expires_after[anchor]", str(item))
                else:
                    self.seconds = _check_seconds(item)
        else:
            raise InvalidRequest(f"Unrecognized request argument supplied: {name[:100]}", param=name[:100])

    def finish(self, file_given: bool) -> tuple[str, int | None]:
        """(purpose, expires_after seconds or None), once the whole form has been read."""
        if self.purpose is None:
            raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
        if not file_given:
            raise InvalidRequest("Missing required parameter: 'file'.", param="file")
        if (self.anchor is None) != (self.seconds is None):
            missing = "anchor" if self.anchor is None else "seconds"
            raise InvalidRequest(f"Missing required parameter: 'expires_after.{missing}'.",
                                 param=f"expires_after.{missing}")
        return self.purpose, self.seconds


def parse_list_limit(raw: str | None) -> int:
    if raw is None:
        return LIST_LIMIT_MAX
    try:
        n = int(raw)
    except ValueError:
        raise InvalidRequest(f"Invalid 'limit': expected an integer, but got '{raw[:100]}' instead.",
                             param="limit") from None
    if not 1 <= n <= LIST_LIMIT_MAX:
        which = "below minimum" if n < 1 else "above maximum"
        raise InvalidRequest(f"Invalid 'limit': integer {which} value. Expected a value between 1 and "
                             f"{LIST_LIMIT_MAX}, but got {n} instead.", param="limit")
    return n
