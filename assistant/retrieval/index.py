"""The vector index in Chroma (embedded or a server): one writer builds, readers follow a pointer.

What lives in Chroma:

- ``{prefix}-{fingerprint}`` collections hold the passage embeddings. The fingerprint covers model,
  chunking and knowledge content, so a changed knowledge base gets a new collection and is never
  silently served stale. A rebuild of unchanged content goes to ``{prefix}-{fingerprint}-{stamp}``.
  Collection metadata: ``complete`` (set only after every passage is in), ``fingerprint``,
  ``heartbeat`` (refreshed while a build runs) and ``completed`` (when it finished).
- ``{prefix}.registry`` holds one record per fingerprint naming its complete collection, and an
  ``active`` record naming the newest. One upsert switches both: readers never see a half-built
  collection, and never one being deleted on purpose.

The writer (``ensure_index``; ``pce-assistant index``, and in the embedded mode also the first
start, behind a file lock) builds, marks complete, switches, then removes what nothing points to.
Creating ``{prefix}-{fingerprint}`` is atomic in Chroma, so of two writers started at once for
the same content one builds and the other waits for it. Removal keeps the collections of the two
newest fingerprints (the running version and the one before it, so a rolling upgrade's old
workers keep theirs), any build whose heartbeat is fresh, and any other version's collection
finished in the last few minutes (its writer may be about to switch to it). A reader whose
collection was replaced by a same-content rebuild gets "not found" and follows the pointer again.

Readers (``open_index``; ``serve`` on a Chroma server, and every worker) only open what the
pointer names; they never build or delete on a shared server. "Not found" is caught only where it
means "not found"; every other Chroma or network error is retried with backoff and then raised as
``IndexUnavailableError``, which the assistant turns into keyword search with a note.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlparse

from assistant.errors import ConfigurationError, IndexError_, IndexUnavailableError
from assistant.retrieval.embeddings import Embedder
from assistant.settings import Settings
from assistant.types import Passage

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH = 64
KEEP_VERSIONS = 2  # fingerprints whose collections survive removal: this version and the last
STALE_BUILD_S = 300.0  # a build whose heartbeat is older than this is presumed dead
SWITCH_GRACE_S = 600.0  # another version's unreferenced complete collection is left this long
BUILD_WAIT_S = 3600.0  # the longest a writer or reader waits for another writer's build
POLL_S = 1.0
# Backoff for transient errors: at start (a server may be restarting) and per query (a user waits).
START_WAITS = (0.1, 0.3, 0.6, 1.0)
QUERY_WAITS = (0.05,)
REGISTRY = "registry"
ACTIVE = "active"


def index_fingerprint(
    embedder_name: str, sha256: str, chunk_size: int, chunk_overlap: int, content: str
) -> str:
    blob = "|".join([embedder_name, sha256, str(chunk_size), str(chunk_overlap), content])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def settings_fingerprint(settings: Settings, embedder_name: str, content_fingerprint: str) -> str:
    return index_fingerprint(
        embedder_name,
        settings.embedding_sha256,
        settings.chunk_size,
        settings.chunk_overlap,
        content_fingerprint,
    )


# --- errors: "not found" versus transient ---------------------------------------------------------


def _not_found() -> type[Exception]:
    from chromadb.errors import NotFoundError

    return NotFoundError


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: network and server errors. Not "not found", not our own or bad arguments."""
    import httpx
    from chromadb.errors import ChromaError, InvalidArgumentError, NotFoundError

    if isinstance(exc, (NotFoundError, InvalidArgumentError)):
        return False
    return isinstance(exc, (httpx.TransportError, ChromaError, OSError))


def retrying(call: Callable[[], T], waits: Sequence[float], what: str) -> T:
    """Run ``call``; on a transient error wait and try again; then raise IndexUnavailableError."""
    for attempt, wait in enumerate((*waits, None)):
        try:
            return call()
        except IndexUnavailableError as exc:  # our own "cannot reach": as transient as it gets
            if wait is None:
                raise
            log.warning("%s (attempt %d): %s; retrying in %.2f s", what, attempt + 1, exc, wait)
            time.sleep(wait)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if wait is None:
                raise IndexUnavailableError(f"{what}: {type(exc).__name__}: {exc}") from exc
            log.warning("%s (attempt %d): %s; retrying in %.2f s", what, attempt + 1, exc, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


# --- client ---------------------------------------------------------------------------------------


def where(settings: Settings) -> str:
    return settings.chroma_url or str(settings.chroma_path)


def open_client(settings: Settings) -> Any:
    """An embedded PersistentClient, or an HttpClient when PCE_CHROMA_URL is set. No telemetry."""
    os.environ["ANONYMIZED_TELEMETRY"] = "False"
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigurationError(
                f"PCE_CHROMA_URL '{settings.chroma_url}' is not a URL like http://127.0.0.1:8000"
            )
        try:
            client = chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 80),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
            client.heartbeat()
        except Exception as exc:
            raise IndexUnavailableError(
                f"Cannot reach the Chroma server at {settings.chroma_url}: {exc}. Start it "
                "(chroma run --path DIR --host 127.0.0.1 --port N) or unset PCE_CHROMA_URL."
            ) from exc
        return client
    try:  # a file where the index directory should be is as corrupt as a bad database
        settings.chroma_path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)
    except Exception as exc:
        raise IndexError_(
            f"Cannot open the index at {settings.chroma_path}: {exc}. It may be corrupt: remove "
            "that directory and run 'pce-assistant index'."
        ) from exc


def index_command(settings: Settings) -> str:
    """The exact command that builds the index these settings read."""
    if settings.chroma_url:
        return f"PCE_CHROMA_URL={settings.chroma_url} pce-assistant index"
    return "pce-assistant index"


# --- the registry: which collection is active for each fingerprint --------------------------------


@dataclass(frozen=True)
class Pointer:
    fingerprint: str
    collection: str
    passages: int
    switched: float


class Registry:
    """``{prefix}.registry``: a record per fingerprint, plus ``active``; switched in one upsert.

    Readers (``create=False``) never write, not even an empty registry: none means no pointer.
    """

    def __init__(self, client: Any, prefix: str, *, create: bool = True) -> None:
        self.client = client
        self.name = f"{prefix}.{REGISTRY}"
        self.create = create
        self._collection: Any = None

    def _get(self) -> Any:
        if self._collection is None:
            if self.create:
                # get_or_create is one server-side call, safe when two writers start together.
                self._collection = self.client.get_or_create_collection(
                    self.name, embedding_function=None
                )
            else:
                self._collection = self.client.get_collection(self.name, embedding_function=None)
        return self._collection

    def _call(self, fn: Callable[[Any], T], missing: T) -> T:
        try:
            return fn(self._get())
        except _not_found():  # no registry (yet), or removed by hand
            self._collection = None
            if not self.create:
                return missing
            return fn(self._get())

    def pointer(self, fingerprint: str) -> Pointer | None:
        got = self._call(lambda c: c.get(ids=[fingerprint], include=["metadatas"]), None)
        if not got or not got["ids"]:
            return None
        return _pointer(got["metadatas"][0])

    def pointers(self) -> list[Pointer]:
        """Every version's pointer, newest switch first."""
        got = self._call(lambda c: c.get(include=["metadatas"]), None)
        if not got:
            return []
        found = [
            _pointer(meta)
            for record_id, meta in zip(got["ids"], got["metadatas"], strict=True)
            if record_id != ACTIVE
        ]
        return sorted(found, key=lambda p: -p.switched)

    def active(self) -> Pointer | None:
        return self.pointer(ACTIVE)

    def switch(self, pointer: Pointer) -> None:
        """One write: this version's pointer and the active record (readers read only one)."""
        meta = {
            "fingerprint": pointer.fingerprint,
            "collection": pointer.collection,
            "passages": pointer.passages,
            "switched": pointer.switched,
        }
        self._call(
            lambda c: c.upsert(
                ids=[pointer.fingerprint, ACTIVE],
                metadatas=[meta, meta],
                # Records need a vector; the registry is never queried, so a 1-d zero will do.
                embeddings=[[0.0], [0.0]],
            ),
            None,
        )

    def drop(self, fingerprints: Sequence[str]) -> None:
        if fingerprints:
            self._call(lambda c: c.delete(ids=list(fingerprints)), None)


def _pointer(meta: Any) -> Pointer:
    meta = meta or {}
    return Pointer(
        fingerprint=str(meta.get("fingerprint", "")),
        collection=str(meta.get("collection", "")),
        passages=int(meta.get("passages", 0)),
        switched=float(meta.get("switched", 0.0)),
    )


# --- reading --------------------------------------------------------------------------------------


class VectorIndex:
    """The active collection for one fingerprint; dense queries return (passage id, cosine).

    Opens lazily and follows the registry pointer again when its collection is gone, so a worker
    that starts while the server is down, or whose collection a rebuild replaced, recovers alone.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        prefix: str,
        fingerprint: str,
        where: str,
        *,
        command: str = "pce-assistant index",
        client: Any = None,
    ) -> None:
        self._connect = connect
        self._client = client
        self.prefix = prefix
        self.fingerprint = fingerprint
        self.where = where
        self.command = command
        self.name: str | None = None
        self._collection: Any = None

    @property
    def base_name(self) -> str:
        return f"{self.prefix}-{self.fingerprint}"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    @property
    def registry(self) -> Registry:
        return Registry(self.client, self.prefix, create=False)  # a reader writes nothing

    @property
    def collection_id(self) -> str:
        """The open collection's Chroma id (tests compare it across faults)."""
        return str(self._open().id)

    def _missing(self) -> IndexError_:
        return IndexError_(
            f"No active index for this knowledge version (fingerprint {self.fingerprint}) at "
            f"{self.where}. Build it with: {self.command}"
        )

    def _open(self, refresh: bool = False) -> Any:
        """The collection the pointer names; raises IndexError_ if there is none."""
        if self._collection is not None and not refresh:
            return self._collection
        self._collection = None
        pointer = self.registry.pointer(self.fingerprint)
        if pointer is None:
            raise self._missing()
        try:
            collection = self.client.get_collection(pointer.collection, embedding_function=None)
        except _not_found() as exc:  # removed between the pointer read and here
            raise self._missing() from exc
        self.name = pointer.collection
        self._collection = collection
        return collection

    def resolve(self, waits: Sequence[float] = START_WAITS) -> str:
        """Open the active collection now (transient errors retried); returns its name."""
        retrying(lambda: self._open(refresh=True), waits, f"Cannot read the index at {self.where}")
        assert self.name is not None
        return self.name

    def _query_once(self, vector: Sequence[float], k: int) -> Any:
        def run(collection: Any) -> Any:
            return collection.query(
                query_embeddings=[list(vector)], n_results=k, include=["distances"]
            )

        try:
            return run(self._open())
        except _not_found():  # replaced by a rebuild of the same content: follow the pointer
            log.info("index collection %s is gone; following the registry pointer", self.name)
            return run(self._open(refresh=True))

    def query(self, vector: Sequence[float], k: int) -> list[tuple[str, float]]:
        try:
            result = retrying(
                lambda: self._query_once(vector, k),
                QUERY_WAITS,
                f"Dense search failed ({self.where})",
            )
        except IndexUnavailableError:
            self._collection = None  # reopen on the next call (e.g. after a server restart)
            raise
        except IndexError_ as exc:  # no active collection: keyword search, and say why
            self._collection = None
            raise IndexUnavailableError(str(exc)) from exc
        except Exception as exc:
            self._collection = None
            raise IndexUnavailableError(f"Dense search failed ({self.where}): {exc}") from exc
        ids = result["ids"][0]
        distances = result["distances"][0]
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]


def build_in_progress(client: Any, base_name: str) -> bool:
    """Is some writer filling a collection for this fingerprint right now (fresh heartbeat)?"""
    for name in _names(client):
        if name == base_name or name.startswith(f"{base_name}-"):
            meta = _metadata_of(client, name)
            if meta is not None and not meta.get("complete") and _fresh(meta):
                return True
    return False


def open_index(
    settings: Settings,
    embedder_name: str,
    content_fingerprint: str,
    *,
    wait_s: float = 0.0,
    required: bool = True,
    client: Any = None,
) -> VectorIndex:
    """A reader of the active collection for these settings. Never builds or deletes anything.

    ``required``: fail now if it cannot be opened (a first start); otherwise log and let the first
    query try again (a restarted worker while the server is briefly down). With no active
    collection it waits ``wait_s`` seconds, and as long as another writer's build is alive.
    """
    fingerprint = settings_fingerprint(settings, embedder_name, content_fingerprint)
    index = VectorIndex(
        lambda: open_client(settings),
        settings.collection_prefix,
        fingerprint,
        where(settings),
        command=index_command(settings),
        client=client,
    )
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        try:
            index.resolve()
            return index
        except IndexUnavailableError:
            if required:
                raise
            log.warning(
                "index at %s unreachable at start; keyword search until it is back", index.where
            )
            return index
        except IndexError_:
            building = retrying(
                lambda: build_in_progress(index.client, index.base_name),
                START_WAITS,
                f"Cannot read the index at {index.where}",
            )
            now = time.monotonic()
            if not building and now >= deadline:
                raise
            if building and now >= deadline + BUILD_WAIT_S:
                raise
            if not announced:
                log.warning(
                    "no active index yet at %s; waiting (%s)",
                    index.where,
                    "a build is in progress" if building else f"up to {wait_s:.0f} s",
                )
                announced = True
            time.sleep(POLL_S)


# --- writing --------------------------------------------------------------------------------------


def _metadata(p: Passage) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source_id": p.source_id,
        "section_id": p.section_id,
        "section": p.section,
        "title": p.title,
        "evidence_type": p.evidence_type,
        "user_supplied": p.user_supplied,
    }
    for key in ("year", "doi", "pmid", "url"):
        value = getattr(p, key)
        if value is not None:  # Chroma metadata cannot hold None
            meta[key] = value
    return meta


def _names(client: Any) -> list[str]:
    return sorted(c if isinstance(c, str) else c.name for c in client.list_collections())


def _metadata_of(client: Any, name: str) -> dict[str, Any] | None:
    try:
        return dict(client.get_collection(name, embedding_function=None).metadata or {})
    except _not_found():
        return None


def _fresh(meta: dict[str, Any]) -> bool:
    return time.time() - float(meta.get("heartbeat", 0.0)) < STALE_BUILD_S


def _delete(client: Any, name: str) -> bool:
    try:
        client.delete_collection(name)
    except _not_found():
        return False
    return True


@contextmanager
def _file_lock(settings: Settings) -> Iterator[None]:
    """Embedded mode: one writer per data directory (processes on one machine)."""
    if settings.chroma_url:
        yield
        return
    from filelock import FileLock

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(settings.data_dir / "index.lock")):
        yield


@dataclass
class IndexReport:
    collection: str
    passages: int
    sources: int
    built: bool
    seconds: float
    removed_stale: list[str] = field(default_factory=list)
    where: str = ""
    built_by_other: bool = False

    def summary(self) -> str:
        verb = "Built" if self.built else "Up to date:"
        text = (
            f"{verb} collection '{self.collection}' ({self.where}): {self.passages} passages from "
            f"{self.sources} sources"
        )
        if self.built:
            text += f" in {self.seconds:.1f} s; now active"
        if self.built_by_other:
            text += " (built by another run started at the same time)"
        if self.removed_stale:
            text += f"; removed {len(self.removed_stale)} stale: {', '.join(self.removed_stale)}"
        return text + "."


class _Writer:
    """One run of the writer for one fingerprint (see the module docstring)."""

    def __init__(self, client: Any, settings: Settings, fingerprint: str) -> None:
        self.client = client
        self.prefix = settings.collection_prefix
        self.fingerprint = fingerprint
        self.base = f"{self.prefix}-{fingerprint}"
        self.registry = Registry(client, self.prefix)
        self.owned: set[str] = set()  # collections this run created (its own to remove)

    def healthy(self, name: str, expected: int) -> bool:
        try:
            collection = self.client.get_collection(name, embedding_function=None)
        except _not_found():
            return False
        meta = collection.metadata or {}
        return bool(meta.get("complete")) and collection.count() == expected

    def current(self, expected: int) -> str | None:
        """The active collection for this fingerprint if it is whole; adopts a legacy one."""
        pointer = self.registry.pointer(self.fingerprint)
        if pointer is not None and self.healthy(pointer.collection, expected):
            return pointer.collection
        if pointer is None and self.healthy(self.base, expected):
            # Built before the registry existed (complete, every passage in): point to it.
            self.registry.switch(Pointer(self.fingerprint, self.base, expected, time.time()))
            return self.base
        return None

    def _create(self, name: str, expected: int) -> Any | None:
        """Create ``name`` empty, incomplete; None if another writer has it (atomic in Chroma)."""
        now = time.time()
        meta = {
            "complete": False,
            "fingerprint": self.fingerprint,
            "passages": expected,
            "started": now,
            "heartbeat": now,
        }
        try:
            created = self.client.create_collection(
                name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata=meta,
            )
            self.owned.add(name)
            return created
        except Exception:
            # Chroma reports "already exists" differently embedded and over HTTP; look instead.
            if _metadata_of(self.client, name) is None:
                raise
            return None

    def claim(self, expected: int, rebuild: bool) -> tuple[str, Any] | None:
        """A new collection to fill, or None while another writer builds this fingerprint."""
        referenced = {p.collection for p in self.registry.pointers()}
        meta = _metadata_of(self.client, self.base)
        if meta is None:
            created = self._create(self.base, expected)
            if created is not None:
                return self.base, created
            meta = _metadata_of(self.client, self.base)
        if meta is not None and not meta.get("complete") and self.base not in referenced:
            mine = self.base in self.owned  # our own attempt, cut short by a transient error
            if _fresh(meta) and not rebuild and not mine:
                return None  # someone is building it
            if mine or not _fresh(meta):  # its writer died: take over
                log.warning("removing abandoned build %s", self.base)
                _delete(self.client, self.base)
                created = self._create(self.base, expected)
                return (self.base, created) if created is not None else None
        # The base name is taken by something whole, active or damaged: build beside it.
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
        name = f"{self.base}-{stamp}"
        created = self._create(name, expected)
        if created is None:  # pragma: no cover - a random suffix collided
            raise IndexError_(f"collection {name} appeared while creating it; run again")
        return name, created

    def fill(
        self, collection: Any, passages: Sequence[Passage], embedder: Embedder, progress: bool
    ) -> None:
        meta = dict(collection.metadata or {})
        batches: Any = range(0, len(passages), BATCH)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="Embedding passages", unit="batch")
        for start in batches:
            chunk = passages[start : start + BATCH]
            collection.add(
                ids=[p.id for p in chunk],
                documents=[p.text for p in chunk],
                metadatas=[_metadata(p) for p in chunk],
                embeddings=embedder.embed_documents([p.text for p in chunk]),
            )
            meta["heartbeat"] = time.time()
            collection.modify(metadata=meta)  # metadata is replaced whole, so carry every key
        if collection.count() != len(passages):
            raise IndexError_(
                f"collection {collection.name} holds {collection.count()} of {len(passages)} "
                "passages after the build; run 'pce-assistant index' again"
            )
        now = time.time()
        collection.modify(metadata={**meta, "complete": True, "heartbeat": now, "completed": now})

    def wait_for_other(self, expected: int) -> str | None:
        """Wait while another writer builds; its collection, or None if it died (take over)."""
        deadline = time.monotonic() + BUILD_WAIT_S
        log.warning("another run is building %s; waiting for it", self.base)
        while time.monotonic() < deadline:
            found = self.current(expected)
            if found is not None:
                return found
            meta = _metadata_of(self.client, self.base)
            if meta is None or (not meta.get("complete") and not _fresh(meta)):
                return None
            time.sleep(POLL_S)
        raise IndexError_(f"waited {BUILD_WAIT_S:.0f} s for another build of {self.base}")

    def collect_garbage(self, current: str) -> list[str]:
        """Remove what no kept pointer names, no live build owns, no other writer may switch to."""
        pointers = self.registry.pointers()
        kept = {p.fingerprint for p in pointers[:KEEP_VERSIONS]} | {self.fingerprint}
        self.registry.drop([p.fingerprint for p in pointers if p.fingerprint not in kept])
        removed: list[str] = []
        for name in _names(self.client):
            if not name.startswith(f"{self.prefix}-") or name == current:
                continue
            meta = _metadata_of(self.client, name)
            if meta is None:
                continue
            if not meta.get("complete") and _fresh(meta):
                continue  # a build in progress
            other_version = meta.get("fingerprint", self.fingerprint) != self.fingerprint
            age = time.time() - float(meta.get("completed", 0.0))
            if meta.get("complete") and other_version and age < SWITCH_GRACE_S:
                continue  # another version's writer may be about to switch to it
            # Read the pointers again right before deleting: never remove what one names.
            referenced = {p.collection for p in self.registry.pointers() if p.fingerprint in kept}
            if name in referenced:
                continue
            if _delete(self.client, name):
                removed.append(name)
        return removed


def ensure_index(
    settings: Settings,
    passages: Sequence[Passage],
    embedder: Embedder,
    content_fingerprint: str,
    *,
    rebuild: bool = False,
    progress: bool = False,
    client: Any = None,
) -> tuple[VectorIndex, IndexReport]:
    """The writer: make the active collection for this content whole, building if needed."""
    start = time.perf_counter()
    fingerprint = settings_fingerprint(settings, embedder.name, content_fingerprint)
    at = where(settings)
    expected = len(passages)
    with _file_lock(settings):
        client = client or retrying(
            lambda: open_client(settings), START_WAITS, f"Cannot reach the index at {at}"
        )
        writer = _Writer(client, settings, fingerprint)

        def run() -> tuple[str, bool, bool]:
            """(collection, built here, built by another writer)."""
            while True:
                if not rebuild:
                    found = writer.current(expected)
                    if found is not None:
                        return found, False, False
                claimed = writer.claim(expected, rebuild)
                if claimed is None:
                    found = writer.wait_for_other(expected)
                    if found is not None:
                        return found, False, True
                    continue  # the other writer died: try to claim again
                name, collection = claimed
                log.info("Building index collection %s (%d passages)", name, expected)
                writer.fill(collection, passages, embedder, progress)
                writer.registry.switch(Pointer(fingerprint, name, expected, time.time()))
                return name, True, False

        name, built, by_other = retrying(run, START_WAITS, f"Cannot build the index at {at}")
        removed = retrying(
            lambda: writer.collect_garbage(name), START_WAITS, f"Cannot tidy the index at {at}"
        )
    index = VectorIndex(
        lambda: client,
        settings.collection_prefix,
        fingerprint,
        at,
        command=index_command(settings),
        client=client,
    )
    index.resolve()
    report = IndexReport(
        collection=name,
        passages=expected,
        sources=len({p.source_id for p in passages}),
        built=built,
        seconds=time.perf_counter() - start,
        removed_stale=removed,
        where=at,
        built_by_other=by_other,
    )
    return index, report
