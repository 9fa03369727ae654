"""Which upstream serves which model name, and how big its context window is.

Without a models file every model name goes, unchanged, to ``ASSISTD_LLM_BASE_URL`` with
``ASSISTD_LLM_API_KEY`` (the upstream called ``default``), with a 128 000-token context window.

``ASSISTD_MODELS_FILE`` points at a TOML file that changes this::

    [upstreams.local]                       # any name but "default", which is ASSISTD_LLM_BASE_URL
    base_url = "http://127.0.0.1:11434/v1"  # required
    api_key = "ollama"                      # optional (default "not-needed"); or instead:
    # api_key_env = "OLLAMA_KEY"            #   read the key from this environment variable
    # max_retries = 3                       # optional provider tuning, see OpenAICompatibleProvider
    # timeout = 600.0                       #   seconds of silence before a read gives up
    # connect_timeout = 10.0

    [models."gpt-4o-mini"]                  # the name clients put in assistant/run `model`
    upstream = "local"                      # optional, default "default"
    model = "llama3.1:8b"                   # optional: the name sent upstream (default: same name)
    context_window = 8192                   # optional, tokens (default 128000)

    [models."*"]                            # optional fallback for every unlisted name
    upstream = "default"

Names without a route (and no ``"*"``) go to ``default`` unchanged. Unknown keys, unknown
upstreams and wrong types are refused at start-up with a :class:`ValueError` naming the problem.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import ChatProvider
from .openai_compat import OpenAICompatibleProvider

if TYPE_CHECKING:
    from assistd.config import Settings

DEFAULT_UPSTREAM = "default"
DEFAULT_CONTEXT_WINDOW = 128_000
FALLBACK = "*"

_UPSTREAM_KEYS = {"base_url", "api_key", "api_key_env", "max_retries", "timeout", "connect_timeout"}
_MODEL_KEYS = {"upstream", "model", "context_window"}


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str
    api_key: str
    options: Mapping[str, Any] = field(default_factory=dict)  # extra OpenAICompatibleProvider kwargs


@dataclass(frozen=True, slots=True)
class Route:
    upstream: str = DEFAULT_UPSTREAM
    model: str | None = None  # None: send the requested name unchanged
    context_window: int = DEFAULT_CONTEXT_WINDOW


class ModelRouter:
    def __init__(
        self,
        upstreams: Mapping[str, Upstream],
        routes: Mapping[str, Route] | None = None,
        **provider_options: Any,
    ) -> None:
        """``provider_options`` apply to every provider unless an upstream sets its own."""
        routes = dict(routes or {})
        for name, route in routes.items():
            if route.upstream not in upstreams:
                raise ValueError(f"model {name!r} routes to unknown upstream {route.upstream!r}")
        self._upstreams = dict(upstreams)
        self._routes = routes
        self._fallback = routes.pop(FALLBACK, Route())
        self._provider_options = provider_options
        # Keyed by (upstream, configured model or None): pass-through routes share one provider, so
        # arbitrary model names from clients can't grow this without bound.
        self._providers: dict[tuple[str, str | None], OpenAICompatibleProvider] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **provider_options: Any) -> ModelRouter:
        default = Upstream(DEFAULT_UPSTREAM, settings.llm_base_url, settings.llm_api_key)
        if settings.models_file is None:
            return cls({DEFAULT_UPSTREAM: default}, **provider_options)
        upstreams, routes = load_models_file(settings.models_file, default)
        return cls(upstreams, routes, **provider_options)

    def route(self, model: str) -> Route:
        return self._routes.get(model, self._fallback)

    def provider_for(self, model: str) -> ChatProvider:
        route = self.route(model)
        key = (route.upstream, route.model)
        provider = self._providers.get(key)
        if provider is None:
            upstream = self._upstreams[route.upstream]
            options = {**self._provider_options, **upstream.options}
            provider = OpenAICompatibleProvider(
                upstream.base_url, upstream.api_key, upstream_model=route.model, **options
            )
            self._providers[key] = provider
        return provider

    def context_window(self, model: str) -> int:
        return self.route(model).context_window

    async def aclose(self) -> None:
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            await provider.aclose()


def load_models_file(path: Path, default: Upstream) -> tuple[dict[str, Upstream], dict[str, Route]]:
    """Parse and validate a models file; every problem is a ValueError that names the file."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ValueError(f"models file {path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"models file {path}: invalid TOML: {exc}") from None
    try:
        return _parse(data, default)
    except ValueError as exc:
        raise ValueError(f"models file {path}: {exc}") from None


def _parse(data: dict[str, Any], default: Upstream) -> tuple[dict[str, Upstream], dict[str, Route]]:
    _no_unknown_keys("the top level", data, {"upstreams", "models"})
    upstreams = {DEFAULT_UPSTREAM: default}
    for name, table in _table(data, "upstreams", "[upstreams]").items():
        where = f"[upstreams.{name}]"
        if name == DEFAULT_UPSTREAM:
            raise ValueError(f'{where}: "default" is reserved for ASSISTD_LLM_BASE_URL; pick another name')
        upstreams[name] = _parse_upstream(name, _as_table(table, where), where)
    routes: dict[str, Route] = {}
    for name, table in _table(data, "models", "[models]").items():
        where = f'[models."{name}"]'
        if not name.strip():
            raise ValueError(f"{where}: a model name can't be empty")
        routes[name] = _parse_route(_as_table(table, where), where, upstreams)
    return upstreams, routes


def _parse_upstream(name: str, table: dict[str, Any], where: str) -> Upstream:
    _no_unknown_keys(where, table, _UPSTREAM_KEYS)
    base_url = _get(table, "base_url", str, where, required=True)
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"{where}: base_url must start with http:// or https://, got {base_url!r}")
    api_key = _get(table, "api_key", str, where, default="not-needed")
    if (env := _get(table, "api_key_env", str, where)) is not None:
        if "api_key" in table:
            raise ValueError(f"{where}: give api_key or api_key_env, not both")
        if not (api_key := os.environ.get(env, "")):
            raise ValueError(f"{where}: api_key_env names {env!r}, which is not set")
    options: dict[str, Any] = {}
    if (retries := _get(table, "max_retries", int, where)) is not None:
        if retries < 0:
            raise ValueError(f"{where}: max_retries must be >= 0")
        options["max_retries"] = retries
    for key in ("timeout", "connect_timeout"):
        if (seconds := _get(table, key, (int, float), where)) is not None:
            if seconds <= 0:
                raise ValueError(f"{where}: {key} must be > 0 seconds")
            options[key] = float(seconds)
    return Upstream(name, base_url, api_key, options)


def _parse_route(table: dict[str, Any], where: str, upstreams: Mapping[str, Upstream]) -> Route:
    _no_unknown_keys(where, table, _MODEL_KEYS)
    upstream = _get(table, "upstream", str, where, default=DEFAULT_UPSTREAM)
    if upstream not in upstreams:
        known = ", ".join(sorted(upstreams))
        raise ValueError(f"{where}: upstream {upstream!r} is not defined (known: {known})")
    model = _get(table, "model", str, where)
    if model is not None and not model.strip():
        raise ValueError(f"{where}: model can't be empty (leave it out to send the same name)")
    window = _get(table, "context_window", int, where, default=DEFAULT_CONTEXT_WINDOW)
    if window < 1:
        raise ValueError(f"{where}: context_window must be a positive number of tokens")
    return Route(upstream, model, window)


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    return _as_table(data.get(key, {}), where)


def _as_table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _no_unknown_keys(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    if unknown := sorted(set(table) - allowed):
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _get(
    table: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    where: str,
    *,
    required: bool = False,
    default: Any = None,
) -> Any:
    if key not in table:
        if required:
            raise ValueError(f"{where}: {key} is required")
        return default
    value = table[key]
    # bool is an int subclass, but `context_window = true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{where}: {key} must be of type {names}, got {value!r}")
    return value
