"""Settings, read from the environment (prefix ``ASSISTD_``) and from ``assistd serve`` flags."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSISTD_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./.assistd/assistd.db",
        description="sqlite:///path or postgresql://user@host/db",
    )
    db_pool_size: int = Field(20, ge=1, description="database connections per process, opened as needed and kept "
                              "open (their prepared statements with them)")
    db_max_overflow: int = Field(0, ge=0, description="connections opened beyond db_pool_size under load, each "
                                 "closed when its transaction ends")
    data_dir: Path = Field(Path("./.assistd"), description="where files and blobs live")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma list of static keys, each `secret` or `secret:project`",
    )
    dev_mode: bool | None = Field(None, description="keyless local dev mode: unset = only on a database where no "
                                  "key was ever stored, for direct loopback connections; 1 = whenever no key is "
                                  "active, from anywhere; 0 = never (README: Security)")
    redis_url: str | None = Field(None, description="redis://… carries run events between processes "
                                  "(default on PostgreSQL: LISTEN/NOTIFY)")
    llm_base_url: str = Field("http://127.0.0.1:8001/v1", description="OpenAI-compatible upstream (unset, and no "
                              "models file: the scripted dev model, served in-process)")
    llm_api_key: str = Field("not-needed", description="key sent to the upstream")
    embeddings: str = Field("local", description="`local` (all-MiniLM-L6-v2 on CPU, in a worker process) or "
                            "`upstream:MODEL` (the upstream's /embeddings)")
    embeddings_idle_seconds: float = Field(600.0, ge=0, description="stop the local embedding worker (~370 MB) "
                                           "after this long unused; the next embedding starts it again (0: never)")
    rewrite_model: str = Field("gpt-4o-mini", description="the model that rewrites vector store search queries "
                               "(`rewrite_query: true`), routed like a run's model")
    models_file: Path | None = Field(None, description="TOML routing model names to upstreams")
    workers: int = Field(8, ge=0, description="concurrent runs executed by this process; 0 = API only")
    lease_seconds: float = Field(10.0, gt=0, description="a worker's claim on a run lapses this long after its "
                                 "last heartbeat; another worker then resumes the run")
    run_ttl_seconds: int = Field(600, ge=1, description="runs expire this long after creation (the API's 10 min)")
    max_body_bytes: int = Field(32 * 1024 * 1024, description="largest JSON request body accepted")
    header_timeout_seconds: float = Field(10.0, gt=0, description="a connection must send a whole request head "
                                          "(line and headers) this soon after connecting or after its last response")
    body_timeout_seconds: float = Field(30.0, gt=0, description="a request body that sends nothing for this long "
                                        "is dropped (408)")
    parse_max_bytes: int = Field(256 * 1024**2, gt=0, description="an uploaded document may decompress to at "
                                 "most this (a DOCX's parts, a PDF's streams) and yield at most this much text; "
                                 "larger files fail with invalid_file (decompression bombs)")
    parse_max_entries: int = Field(10_000, gt=0, description="most entries in a zip-based document (DOCX)")
    parse_timeout_seconds: float = Field(120.0, gt=0, description="parsing one document (in a worker process) "
                                         "is stopped after this long: the file fails with invalid_file")
    parse_memory_bytes: int = Field(2 * 1024**3, gt=64 * 1024**2, description="address-space limit of the "
                                    "process parsing one document")
    log_level: str = "info"
    log_format: str = Field("auto", pattern="^(auto|json|text)$", description="`json` (one object per line), "
                            "`text`, or `auto`: text on a terminal, JSON otherwise")
    access_log: bool = Field(True, description="one log line per HTTP request (method, route, status, duration)")
    metrics: bool = Field(True, description="Prometheus metrics on /metrics (0: no recording, /metrics is 404)")
    metrics_project_label: bool = Field(True, description="token counters carry a `project` label (0: off, "
                                        "for many projects)")
    metrics_port: int | None = Field(None, description="`assistd worker`: serve /metrics on this port")
    rate_limit_rpm: int = Field(0, ge=0, description="default requests per minute per project (0: unlimited; "
                                "`assistd projects limits` sets a project's own)")
    rate_limit_tpm: int = Field(0, ge=0, description="default tokens per minute per project (0: unlimited)")
    rate_limit_concurrent_runs: int = Field(0, ge=0, description="default active runs per project (0: unlimited)")
    drain_seconds: float = Field(0.0, ge=0, description="on SIGTERM, /readyz answers 503 for this long while "
                                 "requests are still served, then the server stops (set it above your load "
                                 "balancer's health-check interval × failures)")

    @field_validator("dev_mode", mode="before")
    @classmethod
    def _unset_dev_mode(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def upstream_unconfigured(settings: Settings) -> bool:
    """True when neither ASSISTD_LLM_BASE_URL nor ASSISTD_MODELS_FILE was given: ``serve`` then runs the
    scripted dev model in-process instead of calling the default URL where nothing listens."""
    return "llm_base_url" not in settings.model_fields_set and settings.models_file is None
