"""PCE Assistant: cited decision support for pulmonary cement embolism.

    from assistant import Assistant
    answer = Assistant.from_settings().ask("Asymptomatic peripheral cement emboli - anticoagulate?")

Importing the package loads no model and opens no database; ``Assistant.from_settings`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assistant.errors import AssistantError, InputError
from assistant.settings import Settings
from assistant.types import Answer, Citation, Findings, Passage, Recommendation, Source

if TYPE_CHECKING:
    from assistant.assistant import Assistant

__all__ = [
    "Answer",
    "Assistant",
    "AssistantError",
    "Citation",
    "Findings",
    "InputError",
    "Passage",
    "Recommendation",
    "Settings",
    "Source",
]


def __getattr__(name: str) -> Any:
    # Deferred: the orchestrator pulls in LangChain and the retrieval stack.
    if name == "Assistant":
        from assistant.assistant import Assistant

        return Assistant
    raise AttributeError(f"module 'assistant' has no attribute {name!r}")
