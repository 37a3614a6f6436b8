"""The prefetch queries, run against the EHR's FHIR server when it sent no prefetch.

Only servers on the configured allow-list are queried (CDS Hooks security guidance: a service
talks to FHIR servers it knows), with the EHR's bearer token, a timeout, and the first page only.
The token is never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["FhirFetchError", "fetch", "is_allowed", "query_for"]

log = logging.getLogger(__name__)
PATIENT_TOKEN = "{{context.patientId}}"


class FhirFetchError(Exception):
    """A query to the EHR's FHIR server failed; the message says which and why (no token)."""


def _base(url: str) -> str:
    return url.rstrip("/")


def is_allowed(server: str, allowed: Sequence[str]) -> bool:
    """The server is one of the allowed base URLs (or below one), over http(s)."""
    if urlsplit(server).scheme not in ("http", "https"):
        return False
    base = _base(server)
    return any(base == _base(a) or base.startswith(_base(a) + "/") for a in allowed)


def query_for(template: str, patient_id: str) -> str:
    return template.replace(PATIENT_TOKEN, patient_id)


def fetch(
    server: str,
    queries: Mapping[str, str],
    *,
    token: str | None,
    timeout_s: float,
) -> dict[str, Any]:
    """Run each query (relative to ``server``); key -> the JSON body (a Bundle, unchecked)."""
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    results: dict[str, Any] = {}
    # trust_env=False: no proxy or .netrc from the environment decides where patient data goes.
    with httpx.Client(timeout=timeout_s, headers=headers, trust_env=False) as client:
        for key, query in queries.items():
            url = f"{_base(server)}/{query.lstrip('/')}"
            shown = url.split("?", 1)[0]
            try:
                response = client.get(url)
            except httpx.TimeoutException as exc:
                raise FhirFetchError(f"{shown}: no answer within {timeout_s:g} s") from exc
            except httpx.HTTPError as exc:
                raise FhirFetchError(f"{shown}: {type(exc).__name__}") from exc
            if response.status_code != 200:
                raise FhirFetchError(f"{shown}: HTTP {response.status_code}")
            try:
                results[key] = response.json()
            except ValueError as exc:
                raise FhirFetchError(f"{shown}: the answer is not JSON") from exc
            log.info("fetched %s for the CDS service (%d bytes)", shown, len(response.content))
    return results
