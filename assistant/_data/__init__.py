"""Data that ships inside the wheel, as package resources (``pyproject.toml`` maps them).

``knowledge/`` becomes ``assistant/_data/knowledge`` and ``evals/questions/`` becomes
``assistant/_data/questions``. In a source checkout (editable install) this folder holds only
this file and the data is read from the top of the repository (``assistant.settings``).
"""
