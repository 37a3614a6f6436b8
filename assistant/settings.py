"""One settings object, read from ``PCE_*`` environment variables (and an optional ``.env``).

A key that is not a setting is an error, not silently ignored: an unknown ``PCE_*`` environment
variable or an unknown key in ``.env`` raises ``ConfigurationError`` naming it, with a "did you
mean". Defaults need no source tree: the knowledge and the evaluation questions ship inside the
package (``assistant/_data``); a source checkout reads them from the top of the repository.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.resources
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from assistant.errors import ConfigurationError

ENV_PREFIX = "PCE_"
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
RetrieverMode = Literal["hybrid", "dense", "bm25"]


def _shipped(name: str, checkout: str) -> Path:
    """A data folder shipped in the wheel (assistant/_data/<name>) or, in a source checkout,
    the folder at the top of the repository."""
    packaged = importlib.resources.files("assistant._data") / name
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(str(importlib.resources.files("assistant"))).parent / checkout


def default_knowledge_dir() -> Path:
    """The curated knowledge shipped with the package (PCE_KNOWLEDGE_DIR overrides it)."""
    return _shipped("knowledge", "knowledge")


def default_questions_dir() -> Path:
    """The evaluation question sets shipped with the package."""
    return _shipped("questions", "evals/questions")


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pce-assistant"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        # A shared .env may hold other tools' keys: ignore those, but refuse PCE_* typos (below).
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    knowledge_dir: Path = Field(
        default_factory=default_knowledge_dir, description="Sources, rules table and lexicon."
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the embedded Chroma index, user documents and audit database live.",
    )
    chroma_url: str | None = Field(
        default=None, description="Use a Chroma server (http://host:port) instead of embedded."
    )
    collection_prefix: str = "pce"
    embedding_model_dir: Path | None = Field(
        default=None, description="sentence-transformers model directory; default: bundled MiniLM."
    )
    embedding_model_name: str = "sentence-transformers/all-MiniLM-L6-v2"
    embedding_sha256: str = Field(
        default=DEFAULT_MODEL_SHA256, description="Expected SHA-256 of model.safetensors."
    )
    retriever: RetrieverMode = "hybrid"
    top_k: int = Field(default=5, ge=1, le=50)
    candidates: int = Field(
        default=20, ge=1, le=200, description="Per-retriever depth before fusion."
    )
    # Tuned on the evaluation dev split and the paraphrase set (evals/README.md): exact terms
    # (authors, drugs, numbers) carry much of the signal here; dense still rescues paraphrases.
    rrf_k: int = Field(default=10, ge=1)
    dense_weight: float = Field(default=0.7, ge=0.0, description="RRF weight of dense vs BM25.")
    chunk_size: int = Field(default=1200, ge=200, description="Characters per passage, at most.")
    chunk_overlap: int = Field(default=150, ge=0)
    max_question_chars: int = Field(default=4000, ge=100)
    max_history_turns: int = Field(default=50, ge=0)
    scope_threshold: float = Field(
        default=0.35, description="Minimum dense similarity for a question with no domain term."
    )
    audit_db: Path | None = Field(default=None, description="Default: <data_dir>/audit.sqlite3.")
    audit_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the audit database, e.g. postgresql+psycopg://u:p@h/db; "
        "default: SQLite at audit_db.",
    )
    audit_spool: Path | None = Field(
        default=None,
        description="Local append-only file holding audit events while the database is down; "
        "default: <data_dir>/audit-spool.jsonl.",
    )
    workers: int | None = Field(
        default=None, ge=1, le=64, description="API worker processes for serve; unset: one process."
    )
    index_wait_s: float = Field(
        default=0.0, ge=0.0, description="How long serve waits for `pce-assistant index`."
    )
    llm: str | None = Field(default=None, description="Optional chat model, e.g. 'ollama:llama3'.")
    api_token: SecretStr | None = Field(default=None, description="Bearer token for the HTTP API.")
    ui_user: str | None = None
    ui_password: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    public_url: str | None = Field(
        default=None,
        description="Base URL of the web UI as clinicians reach it (the CDS link card opens it); "
        "default: the address the request came to.",
    )
    vitals_window_hours: float = Field(
        default=24, gt=0, le=24 * 14, description="CDS Hooks: a vital sign counts when this recent."
    )
    fhir_servers: tuple[str, ...] = Field(
        default=(),
        description="CDS Hooks: FHIR base URLs the service may query when the EHR sends no "
        "prefetch (JSON list). Empty: never query; the card says what is missing.",
    )
    fhir_timeout_s: float = Field(default=10.0, gt=0, le=120, description="Per FHIR query.")

    def __init__(self, **values: Any) -> None:
        unknown_environment(os.environ)
        unknown_environment(_dotenv(), where=".env")
        fields = type(self).model_fields
        typos = [k for k in values if not k.startswith("_") and k not in fields]
        if typos:
            raise ConfigurationError(
                "; ".join(f"{k} is not a setting{_did_you_mean(ENV_PREFIX + k)}" for k in typos)
            )
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_explain(exc)) from exc

    @property
    def audit_path(self) -> Path:
        return self.audit_db or self.data_dir / "audit.sqlite3"

    @property
    def audit_spool_path(self) -> Path:
        return self.audit_spool or self.data_dir / "audit-spool.jsonl"

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    def fingerprint(self) -> str:
        """Hash of the settings that change answers (not secrets, not paths to logs)."""
        relevant = {
            "model": self.embedding_model_name,
            "sha": self.embedding_sha256,
            "retriever": self.retriever,
            "top_k": self.top_k,
            "candidates": self.candidates,
            "rrf_k": self.rrf_k,
            "dense_weight": self.dense_weight,
            "chunk": [self.chunk_size, self.chunk_overlap],
            "scope": self.scope_threshold,
            "llm": self.llm,
            "vitals_window_hours": self.vitals_window_hours,
        }
        blob = json.dumps(relevant, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _names() -> list[str]:
    return [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key.upper(), _names(), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _dotenv() -> Mapping[str, str | None]:
    path = Path(".env")
    return dotenv_values(path) if path.is_file() else {}


def unknown_environment(environ: Mapping[str, Any], where: str = "environment") -> None:
    """Raise ``ConfigurationError`` for a ``PCE_*`` variable that is not a setting (a typo)."""
    known = set(_names())
    unknown = sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in
                     known)
    if unknown:
        what = "environment variable" if where == "environment" else f"{where} key"
        raise ConfigurationError(
            "; ".join(f"{what} {k} is not a setting{_did_you_mean(k)}" for k in unknown)
            + f". Settings: {', '.join(sorted(known))} (README, Configuration)."
        )


def _explain(exc: ValidationError) -> str:
    """One line per invalid setting, named as it is written (PCE_TOP_K, or the .env key)."""
    lines = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "settings"
        if error["type"] == "extra_forbidden":
            as_env = key if key.upper().startswith(ENV_PREFIX) else ENV_PREFIX + key
            lines.append(f"{key} (in .env or passed to Settings) is not a setting"
                         f"{_did_you_mean(as_env)}")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{ENV_PREFIX}{key.upper()}: {message} (got {error.get('input')!r})")
    return "invalid setting " + "; ".join(lines)
