"""The command line: ``pce-assistant index | rules check | ask | chat | serve | eval | audit``.

Only wiring lives here; every command calls the package's public functions and turns
``AssistantError`` into a one-line message and exit status 2 (never a traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from assistant.errors import AssistantError
from assistant.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "chroma_url", None):
        overrides["chroma_url"] = args.chroma_url
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "retriever", None):
        overrides["retriever"] = args.retriever
    return Settings(**overrides)  # type: ignore[arg-type]


def cmd_index(args: argparse.Namespace) -> int:
    from assistant.corpus import load_corpus
    from assistant.embeddings import embedder_from_settings
    from assistant.index import ensure_index
    from assistant.userdocs import add_user_documents

    settings = _settings(args)
    if args.add:
        added = add_user_documents([Path(p) for p in args.add], settings.data_dir)
        for source in added:
            print(f"Added user-supplied document '{source.title}' as {source.id} "
                  f"({len(source.sections)} section(s)).")
    corpus = load_corpus(settings)
    embedder = embedder_from_settings(
        settings.embedding_model_dir, settings.embedding_sha256, settings.embedding_model_name
    )
    _, report = ensure_index(
        settings, corpus.passages, embedder, corpus.fingerprint,
        rebuild=args.rebuild, progress=sys.stderr.isatty(),
    )
    print(report.summary())
    print(f"Knowledge version {corpus.knowledge.fingerprint}; "
          f"{len(corpus.user_sources)} user-supplied document(s).")
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    from assistant.knowledge import load_knowledge
    from assistant.rules import check_rules

    settings = _settings(args)
    path = Path(args.path) if args.path else settings.knowledge_dir / "rules.yaml"
    knowledge = load_knowledge(settings.knowledge_dir)
    problems = check_rules(path, knowledge.sources)
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{path}: OK (no unknown fields or values, no duplicate ids, every citation resolves, "
          "no gaps or overlaps over every combination of inputs).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pce-assistant",
        description="Cited decision support for pulmonary cement embolism (PCE).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="build the vector index from knowledge/ (and your documents)")
    p.add_argument("--add", nargs="+", metavar="PATH", help="also ingest .txt/.md/.pdf files")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if up to date")
    p.add_argument("--chroma-url", help="use a Chroma server, e.g. http://127.0.0.1:8000")
    p.add_argument("--data-dir", help="where the embedded index lives (PCE_DATA_DIR)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("rules", help="the decision table")
    rules_sub = p.add_subparsers(dest="rules_command", required=True)
    pc = rules_sub.add_parser("check", help="verify the rules table (CI runs this)")
    pc.add_argument("--path", help="a rules YAML file (default: knowledge/rules.yaml)")
    pc.set_defaults(func=cmd_rules_check)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except AssistantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
