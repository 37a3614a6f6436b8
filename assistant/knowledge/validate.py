"""Read one data file of ``knowledge/`` and validate it against its pydantic model.

Every knowledge loader goes through ``validate``, which is the project-wide loader of
``assistant.data``: problems name the file, the line, the field (a list item by its ``id``, e.g.
``claims[no-standard].topics``) and what is wrong, with a "did you mean" for unknown names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from assistant.data import load_model
from assistant.errors import KnowledgeError

M = TypeVar("M", bound=BaseModel)


def validate(path: Path, model: type[M]) -> M:
    """Validate ``path`` as ``model``; ``KnowledgeError`` listing every problem if not."""
    return load_model(path, model, error=KnowledgeError)
