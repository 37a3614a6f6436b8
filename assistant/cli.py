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
from typing import Any

from assistant.errors import AssistantError, ConfigurationError
from assistant.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "chroma_url", None):
        overrides["chroma_url"] = args.chroma_url
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "retriever", None) not in (None, "all"):  # 'all' is eval's comparison
        overrides["retriever"] = args.retriever
    if getattr(args, "index_wait_s", None) is not None:
        overrides["index_wait_s"] = args.index_wait_s
    # A bad or unknown PCE_* setting raises ConfigurationError: one line, not a traceback.
    return Settings(**overrides)


def cmd_index(args: argparse.Namespace) -> int:
    from assistant.knowledge.corpus import load_corpus
    from assistant.knowledge.userdocs import add_user_documents
    from assistant.retrieval.embeddings import embedder_from_settings
    from assistant.retrieval.index import ensure_index

    settings = _settings(args)
    if args.add:
        added = add_user_documents([Path(p) for p in args.add], settings.data_dir)
        for source in added:
            print(
                f"Added user-supplied document '{source.title}' as {source.id} "
                f"({len(source.sections)} section(s))."
            )
    corpus = load_corpus(settings)
    embedder = embedder_from_settings(
        settings.embedding_model_dir, settings.embedding_sha256, settings.embedding_model_name
    )
    _, report = ensure_index(
        settings,
        corpus.passages,
        embedder,
        corpus.fingerprint,
        rebuild=args.rebuild,
        progress=sys.stderr.isatty(),
    )
    print(report.summary())
    print(
        f"Knowledge version {corpus.fingerprint}; "
        f"{len(corpus.user_sources)} user-supplied document(s)."
    )
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    from assistant.clinical.rules import check_rules, load_rules
    from assistant.knowledge.keypoints import cell_problems
    from assistant.knowledge.sources import load_knowledge

    settings = _settings(args)
    path = Path(args.path) if args.path else settings.knowledge_dir / "rules.yaml"
    knowledge = load_knowledge(settings.knowledge_dir)
    problems = check_rules(path, knowledge.citations)
    if not problems and knowledge.key_points is not None:
        table = load_rules(path, knowledge.citations)
        ids = [*(r.id for r in table.rows), *(e.id for e in table.escalations)]
        problems = [f"key_points.yaml: {p}" for p in cell_problems(knowledge.key_points, ids)]
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(
        f"{path}: OK (no unknown fields or values, no duplicate ids, every citation resolves, "
        "no gaps or overlaps over every combination of inputs)."
    )
    return 0


def _yes_no(value: str | None) -> bool | None:
    return None if value in (None, "unknown") else value == "yes"


def _assistant(args: argparse.Namespace) -> Any:
    from assistant.assistant import Assistant

    settings = _settings(args)
    # BM25 alone needs no vector index: do not embed the corpus for it.
    return Assistant.from_settings(settings, build_index=settings.retriever != "bm25")


def format_answer(answer: Any, knowledge_dir: Path | None = None) -> str:
    """The terminal's rendering of an answer, by the presentation layer like every other face."""
    from assistant.present import cli_text, default_presentation, presentation_for

    text = presentation_for(knowledge_dir) if knowledge_dir else default_presentation()
    return cli_text(answer, text)


def cmd_ask(args: argparse.Namespace) -> int:
    findings: dict[str, Any] = {}
    if args.symptomatic:
        findings["symptomatic"] = _yes_no(args.symptomatic)
    if args.location:
        findings["location"] = None if args.location == "unknown" else args.location
    if args.unstable:
        findings["hemodynamic_instability"] = _yes_no(args.unstable)
    if args.intracardiac:
        findings["intracardiac_cement"] = _yes_no(args.intracardiac)
    assistant = _assistant(args)
    answer = assistant.ask(args.question, findings=findings or None, surface="cli")
    if args.json:
        _print_json(answer.to_json())
    else:
        print(format_answer(answer, assistant.settings.knowledge_dir))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """An interactive ask loop in the terminal; findings carry over between turns."""
    from assistant.errors import InputError

    assistant = _assistant(args)
    history: list[dict[str, str]] = []
    print("PCE Assistant: ask about pulmonary cement embolism. Empty line or Ctrl-D to quit.")
    while True:
        try:
            question = input("\n> ").strip()
        except EOFError:
            return 0
        if not question:
            return 0
        try:
            answer = assistant.ask(question, history=history, surface="cli")
        except InputError as exc:
            print(f"error: {exc}")
            continue
        print(format_answer(answer, assistant.settings.knowledge_dir))
        history += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer.text},
        ]


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    if workers is None:  # the embedded default: one process, as `make run` has always done
        import uvicorn

        from assistant.web.server import build_app

        app = build_app(settings)
        print(f"PCE Assistant on http://{host}:{port}/ (API docs at /docs)")
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return 0
    return _serve_workers(args, settings, host, port, workers)


def _serve_workers(
    args: argparse.Namespace, settings: Settings, host: str, port: int, workers: int
) -> int:
    from assistant.knowledge.corpus import load_corpus
    from assistant.retrieval.index import open_index

    if not settings.chroma_url:
        raise ConfigurationError(
            "several workers share one index on a Chroma server: start one (chroma run --path "
            "DIR --host 127.0.0.1 --port 8000), set PCE_CHROMA_URL, run 'pce-assistant index', "
            "then serve --workers N (or drop --workers for the embedded single process)"
        )
    # The workers read their settings from PCE_* variables: hand them this command's overrides.
    for name, value in (("PCE_CHROMA_URL", settings.chroma_url),
                        ("PCE_DATA_DIR", str(settings.data_dir)),
                        ("PCE_INDEX_WAIT_S", str(settings.index_wait_s))):
        os.environ[name] = value
    # Fail here, once and clearly, rather than in every worker: the index must be active.
    corpus = load_corpus(settings)
    open_index(settings, settings.embedding_model_name, corpus.fingerprint,
               wait_s=settings.index_wait_s)
    from assistant.web.server import serve_workers

    return serve_workers(settings, host, port, workers, api_port=args.api_port,
                         ui_port=args.ui_port)


def cmd_audit_export(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from assistant.audit import AuditLog

    settings = _settings(args)
    out = Path(args.out)
    fmt = args.format or ("csv" if out.suffix.lower() == ".csv" else "jsonl")
    audit = AuditLog.from_settings(settings)
    try:
        n = audit.export(out, fmt)
    except OSError as exc:
        raise ConfigurationError(f"cannot export the audit trail to {out}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise ConfigurationError(
            f"cannot read the audit database {audit.describe()}: {exc}"
        ) from exc
    print(f"Exported {n} audit event(s) from {audit.describe()} to {out} ({fmt}).")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from assistant.evals.cases import QUESTIONS_DIR, load_cases
    from assistant.evals.report import format_summary, write_ragas, write_report
    from assistant.evals.runner import MODES, gate_failures, gate_mode, run_eval

    if args.gate and args.split == "dev":
        print("error: --gate judges the test split; use --split test or all", file=sys.stderr)
        return 2
    modes = MODES if args.retriever == "all" else (args.retriever,)
    cases = load_cases(Path(args.questions or QUESTIONS_DIR), args.sets, args.split)
    if not cases:
        print(f"error: no cases in split {args.split!r}", file=sys.stderr)
        return 2
    run = run_eval(_settings(args), cases, modes, progress=True, split=args.split)
    out = Path(args.out)
    written = write_report(run, out)
    if args.ragas:
        written += write_ragas(run, out)
    print(format_summary(run))
    print("\nWrote " + ", ".join(str(p) for p in written))
    if not args.gate:
        return 0
    failures = gate_failures(run)
    if failures:
        print(f"\nGATE FAILED ({gate_mode(run)}, test split):", file=sys.stderr)
        print("\n".join(failures), file=sys.stderr)
        return 1
    print(f"\nGate passed ({gate_mode(run)}, test split).")
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

    p = sub.add_parser("ask", help="ask one question; prints narrative, citations and tier card")
    p.add_argument("question")
    p.add_argument("--symptomatic", choices=["yes", "no", "unknown"])
    p.add_argument("--location", choices=["central", "peripheral", "unknown"])
    p.add_argument("--unstable", choices=["yes", "no", "unknown"], help="haemodynamic instability")
    p.add_argument("--intracardiac", choices=["yes", "no", "unknown"], help="intracardiac cement")
    p.add_argument("--json", action="store_true", help="print the Answer as JSON")
    p.add_argument("--retriever", choices=["hybrid", "dense", "bm25"])
    p.add_argument("--chroma-url")
    p.add_argument("--data-dir", help="where the index and audit database live (PCE_DATA_DIR)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("chat", help="interactive ask loop in the terminal")
    p.add_argument("--chroma-url")
    p.add_argument("--data-dir", help="where the index and audit database live (PCE_DATA_DIR)")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("serve", help="web UI + HTTP API + CDS Hooks on one server")
    p.add_argument("--host", help="default 127.0.0.1 (PCE_HOST)")
    p.add_argument("--port", type=int, help="default 7860 (PCE_PORT)")
    p.add_argument("--chroma-url")
    p.add_argument("--data-dir", help="where the index and audit database live (PCE_DATA_DIR)")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="N API worker processes + one UI process behind this port (needs PCE_CHROMA_URL; "
        "PCE_WORKERS); default: one process serving everything",
    )
    p.add_argument("--wait-index", type=float, metavar="SECONDS", dest="index_wait_s",
                   help="wait this long for 'pce-assistant index' to finish (PCE_INDEX_WAIT_S)")
    p.add_argument("--api-port", type=int, help="with --workers: fixed loopback port of the pool")
    p.add_argument("--ui-port", type=int, help="with --workers: fixed loopback port of the UI")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("eval", help="run question sets; write the evaluation report")
    p.add_argument(
        "--set",
        action="append",
        dest="sets",
        metavar="NAME",
        help="question set name under evals/questions (repeatable; default: all)",
    )
    p.add_argument(
        "--retriever",
        choices=["hybrid", "dense", "bm25", "all"],
        default="all",
        help="retrieval mode(s) to compare (default: all three side by side)",
    )
    p.add_argument("--split", choices=["dev", "test", "all"], default="all")
    p.add_argument(
        "--questions", metavar="DIR", help="question-set directory (default: evals/questions)"
    )
    p.add_argument("--out", default="evals/reports", help="report directory")
    p.add_argument("--ragas", action="store_true", help="also export runs in RAGAS columns")
    p.add_argument(
        "--gate",
        action="store_true",
        help="exit 1 if the CI thresholds are not met (lists the broken cases)",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("audit", help="the audit trail")
    audit_sub = p.add_subparsers(dest="audit_command", required=True)
    pe = audit_sub.add_parser(
        "export",
        help="export every event to CSV or JSONL",
        description="Export every audit event, oldest first, from the store PCE_AUDIT_URL names "
        "(PostgreSQL or SQLite; default: the SQLite file under the data directory).",
    )
    pe.add_argument("--out", required=True, help="output file (.csv or .jsonl)")
    pe.add_argument("--format", choices=["csv", "jsonl"])
    pe.add_argument(
        "--data-dir",
        help="data directory of the default SQLite audit database (PCE_DATA_DIR); ignored when "
        "PCE_AUDIT_URL is set",
    )
    pe.set_defaults(func=cmd_audit_export)

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
