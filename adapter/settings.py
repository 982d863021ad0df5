"""Settings: environment variables prefixed ``CARETHREAD_``, overridden by CLI flags.

No module-level instance: build ``Settings(...)`` where needed (tests pass their own).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARETHREAD_", extra="forbid")

    host: str = "127.0.0.1"
    http_port: int = 8080
    mllp_port: int = 2575
    db: Path = Path(".carethread/carethread.sqlite3")
    # FULL: every acknowledged message is on disk before its ACK.  NORMAL trades that for speed.
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL|OFF)$")
    accepted_processing_ids: frozenset[str] = frozenset({"P", "T", "D"})
    timezone: str = "Europe/London"  # for HL7 date-times without an offset
    mappings_dir: Path | None = None  # site overlay, layered over the shipped mappings/
    mllp_max_frame: int = 16 * 1024 * 1024
    mllp_idle_timeout: float = 300.0
    ingest_batch_size: int = 2000  # messages per transaction in bulk file ingest
    organisations: Path | None = Path("sandbox/organisations.yaml")  # who is notified (adapter.notify)
    rules: Path | None = None  # site overlay of mappings/rules/safeguarding.yaml (adapter.rules)
