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
    db_pool_size: int = Field(10, ge=1, description="database connections kept open per process (as many again "
                              "may open under load); raise it for many concurrent requests on PostgreSQL")
    data_dir: Path = Field(Path("./.assistd"), description="where files and blobs live")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma list of static keys, each `secret` or `secret:project`; unset = local dev mode",
    )
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
    log_level: str = "info"

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
