"""One YAML dialect for every data file in ``knowledge/`` and ``evals/``.

YAML 1.1 reads a bare ``yes``/``no``/``on``/``off`` as a boolean, so ``symptomatic: no`` would
become ``False`` in one file and stay ``"no"`` in another. Here only ``true``/``false`` are
booleans; every other word stays text. Safe loading only (no Python objects), with libyaml's
C parser when present.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["Loader", "load_yaml"]

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Loader(_Base):  # type: ignore[valid-type, misc]
    """Safe YAML where only true/false are booleans."""


Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml(text: str | bytes) -> Any:
    """Parse one YAML document in the project's dialect."""
    return yaml.load(text, Loader=Loader)
