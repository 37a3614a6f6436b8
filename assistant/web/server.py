"""The one web server: HTTP API + CDS Hooks, with the Gradio UI mounted at ``/``."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from assistant.assistant import Assistant
from assistant.settings import Settings
from assistant.web.api import create_app

log = logging.getLogger(__name__)


def build_app(settings: Settings | None = None, assistant: Assistant | None = None) -> FastAPI:
    """Build the assistant (validating knowledge, rules, index), warm it, mount the UI."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    assistant = assistant or Assistant.from_settings(settings)
    assistant.warm_up()
    app = create_app(assistant)
    from assistant.web.ui import mount_ui

    return mount_ui(app, assistant)
