"""Start the web app: the Gradio chat UI mounted on the HTTP API, on http://127.0.0.1:7860.

python app.py            # or: pce-assistant serve [--host H --port P]
"""

from __future__ import annotations

from assistant.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["serve"]))
