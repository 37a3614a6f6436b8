"""The evaluation report: Markdown, JSON, per-case JSONL, PNG plots and an optional RAGAS export.

Every report is stamped with the app, knowledge, rules, model and index versions and the date.
``latest.md`` and ``latest.json`` are the committed summary; everything else is git-ignored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from assistant.evals.cases import LABELS
from assistant.evals.runner import (
    ANSWER_GATE,
    GATE,
    GATE_MAX,
    KS,
    EvalRun,
    Metrics,
    gate_failures,
    gate_mode,
)

ROWS: tuple[tuple[str, str], ...] = (
    ("tier_accuracy", "Tier accuracy (all cases)"),
    ("tier_accuracy_tiered", "Tier accuracy (cases expecting a tier)"),
    ("wrong_definite_tiers", "Wrong definite tiers (count)"),
    ("needs_information_precision", "needs_information precision"),
    ("needs_information_recall", "needs_information recall"),
    ("escalation_accuracy", "Escalation accuracy"),
    ("abstention_precision", "Abstention precision"),
    ("abstention_recall", "Abstention recall"),
    ("recall_at_1", "Recall@1"),
    ("recall_at_3", "Recall@3"),
    ("recall_at_5", "Recall@5"),
    ("mrr", "MRR"),
    ("ndcg_at_5", "nDCG@5"),
    ("citation_validity", "Citation validity"),
    ("citation_hit_rate", "Citation hit rate"),
    ("key_fact_coverage", "Key-fact coverage"),
    ("key_fact_cases_complete", "Cases with every key fact"),
    ("latency_p50_ms", "Latency p50 (ms)"),
    ("latency_p95_ms", "Latency p95 (ms)"),
)
DENOMINATORS = {
    "tier_accuracy": "n", "tier_accuracy_tiered": "tiered_n", "escalation_accuracy": "escalation_n",
    "abstention_recall": "abstain_n", "recall_at_5": "retrieval_n", "mrr": "retrieval_n",
    "citation_validity": "citation_n", "key_fact_coverage": "key_fact_n",
}


def _fmt(value: float | None, name: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.0f}" if name.endswith("_ms") else f"{value:.3f}"


def stamp(run: EvalRun) -> str:
    v = run.versions
    return (f"{run.created} · app {v.get('app')} · knowledge {v.get('knowledge')} · "
            f"rules {v.get('rules')} · model {v.get('model')} · index {v.get('index') or '-'}")


# The narrative's rows (answer_metrics): attribute of Metrics.narrative, label, denominator.
NARRATIVE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("lead_knowledge", "Lead: key fact in 2 sentences (knowledge set)", "lead_knowledge_n"),
    ("lead_all", "Lead: key fact in 2 sentences (all cases with key facts)", "lead_all_n"),
    ("population_conflicts", "Population conflicts (sentences)", "population_conflict_cases"),
    ("attribution", "Attribution (answers with exact attribution)", "attribution_n"),
    ("stock_sentences", "Stock sentences (share of answers)", ""),
    ("stock_knowledge", "Stock sentences, knowledge questions (within the set)",
     "stock_knowledge_n"),
    ("stock_vignettes", "Stock sentences, vignettes (within the management set)",
     "stock_vignettes_n"),
    ("sentences_mean", "Evidence sentences per answer (mean)", ""),
)


def metrics_table(columns: dict[str, Metrics]) -> list[str]:
    lines = ["| metric | " + " | ".join(columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, label in ROWS:
        cells = []
        for m in columns.values():
            cell = _fmt(getattr(m, name), name)
            if name in DENOMINATORS:
                cell += f" (n={getattr(m, DENOMINATORS[name])})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + narrative_rows(columns)


def narrative_rows(columns: dict[str, Metrics]) -> list[str]:
    lines = []
    for name, label, denominator in NARRATIVE_ROWS:
        cells = []
        for m in columns.values():
            n = m.narrative
            value = getattr(n, name) if n is not None else None
            cell = str(value) if isinstance(value, int) else _fmt(value)
            if n is not None and denominator:
                cell += f" (n={getattr(n, denominator)})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def confusion_table(matrix: dict[str, dict[str, int]]) -> list[str]:
    labels = list(matrix)
    lines = ["| expected \\ predicted | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels)]
    lines += [f"| {e} | " + " | ".join(str(matrix[e][p]) for p in labels) + " |" for e in labels]
    return lines


def gate_section(run: EvalRun) -> list[str]:
    mode = gate_mode(run)
    test = run.modes[mode].by_split.get("test")
    if test is None:
        return ["No test-split cases in this run; the CI gate was not judged."]
    lines = [f"Judged on **{mode}**, test split (n={test.n}):", ""]
    for name, threshold in GATE.items():
        value = getattr(test, name)
        ok = value is not None and value >= threshold
        lines.append(f"- {'PASS' if ok else 'FAIL'} `{name}` = {_fmt(value)} (≥ {threshold})")
    for name, maximum in GATE_MAX.items():
        count = getattr(test, name)
        lines.append(f"- {'PASS' if count <= maximum else 'FAIL'} `{name}` = {count} (≤ {maximum})")
    narrative = test.narrative
    for name, (op, limit, _) in ANSWER_GATE.items():
        value = getattr(narrative, name) if narrative is not None else None
        ok = value is not None and (value >= limit if op == ">=" else value <= limit)
        shown = str(value) if isinstance(value, int) else _fmt(value)
        sign = "≥" if op == ">=" else "≤"
        lines.append(f"- {'PASS' if ok else 'FAIL'} `{name}` = {shown} ({sign} {limit})")
    broken = gate_failures(run)
    if broken:
        lines += ["", "```", *broken, "```"]
    return lines


def markdown(run: EvalRun, plots: Sequence[str] = ()) -> str:
    counts = run.counts
    lines = [
        "# PCE Assistant — evaluation report", "",
        f"Stamp: {stamp(run)}", "",
        f"Split: `{run.split}` · sets: {', '.join(run.sets)} · retrievers: "
        f"{', '.join(run.modes)}", "",
        "Definitions are in `evals/README.md`. Tier label `none` = no recommendation "
        "(knowledge question, or abstention).", "",
        "## Cases", "", "| set | dev | test | total |", "|---|---:|---:|---:|",
        *(f"| {s} | {c['dev']} | {c['test']} | {c['total']} |" for s, c in counts.items()),
        "", "## Metrics (all cases in this run)", "",
        *metrics_table({m: r.metrics for m, r in run.modes.items()}),
    ]
    for split in ("test", "dev"):
        columns = {m: r.by_split[split] for m, r in run.modes.items() if split in r.by_split}
        if columns and run.split == "all":
            lines += ["", f"## Metrics ({split} split)", "", *metrics_table(columns)]
    lines += ["", "## CI gate", "", *gate_section(run)]
    mode = gate_mode(run)
    lines += ["", f"## Tier confusion matrix ({mode}, all cases)", "",
              *confusion_table(run.modes[mode].metrics.confusion)]
    if plots:
        lines += ["", "## Plots", "", *(f"![{p}]({p})" for p in plots)]
    for m, result in run.modes.items():
        failed = [r for r in result.cases if r.failures]
        lines += ["", f"## Failed cases — {m} ({len(failed)} of {len(result.cases)})", ""]
        if failed:
            lines += ["| case | set/split | why |", "|---|---|---|"]
            lines += [f"| {r.id} | {r.set}/{r.split} | " + "<br>".join(
                f"**{k}**: {v}".replace("|", "\\|") for k, v in r.failures.items()) + " |"
                for r in failed]
        else:
            lines.append("None.")
    return "\n".join(lines) + "\n"


def summary_json(run: EvalRun) -> dict[str, object]:
    """The committed summary: metrics per mode and split, the gate, and failed cases with why."""
    return {
        "created": run.created, "versions": run.versions, "split": run.split, "sets": run.sets,
        "counts": run.counts,
        "gate": {"mode": gate_mode(run), "thresholds": GATE, "maximums": GATE_MAX,
                 "narrative_thresholds": ANSWER_GATE,
                 "failures": gate_failures(run)},
        "modes": {
            m: {
                "settings_fingerprint": r.settings_fingerprint,
                "metrics": r.metrics.model_dump(),
                "by_split": {s: x.model_dump() for s, x in r.by_split.items()},
                "failed_cases": {c.id: c.failures for c in r.cases if c.failures},
            }
            for m, r in run.modes.items()
        },
    }


def plot(run: EvalRun, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    subtitle = f"{run.created[:10]} · knowledge {run.versions.get('knowledge')} · " \
               f"rules {run.versions.get('rules')}"

    mode = gate_mode(run)
    matrix = run.modes[mode].metrics.confusion
    labels = [x for x in matrix if x in LABELS or any(matrix[x].values())]
    grid = [[matrix[e][p] for p in labels] for e in labels]
    fig, ax = plt.subplots(figsize=(7.5, 6.2))
    ax.imshow(grid, cmap="Blues")
    short = [x.replace("surgical_embolectomy", "surgical\nembolectomy")
              .replace("needs_information", "needs\ninformation") for x in labels]
    ax.set_xticks(range(len(labels)), short, fontsize=9)
    ax.set_yticks(range(len(labels)), short, fontsize=9)
    peak = max(max(row) for row in grid) or 1
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=11,
                    color="white" if value > peak / 2 else "black")
    ax.set_xlabel("predicted tier")
    ax.set_ylabel("expected tier")
    acc = _fmt(run.modes[mode].metrics.tier_accuracy)
    ax.set_title(f"Tier confusion matrix ({mode}, n={run.modes[mode].metrics.n}, accuracy {acc})"
                 f"\n{subtitle}", fontsize=10)
    fig.tight_layout()
    names.append(_save(fig, out, f"confusion-{mode}.png"))

    metrics = [(f"recall@{k}", f"recall_at_{k}") for k in KS] + [("MRR", "mrr"),
                                                                 ("nDCG@5", "ndcg_at_5")]
    fig, ax = plt.subplots(figsize=(8, 4.6))
    width = 0.8 / len(run.modes)
    for i, (m, r) in enumerate(run.modes.items()):
        xs = [j + (i - (len(run.modes) - 1) / 2) * width for j in range(len(metrics))]
        values = [getattr(r.metrics, key) or 0.0 for _, key in metrics]
        bars = ax.bar(xs, values, width, label=m)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, padding=2)
    ax.axhline(GATE["recall_at_5"], color="grey", linestyle="--", linewidth=1,
               label=f"gate: hybrid recall@5 ≥ {GATE['recall_at_5']}")
    ax.set_xticks(range(len(metrics)), [label for label, _ in metrics])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score (distinct sources)")
    n = next(iter(run.modes.values())).metrics.retrieval_n
    ax.set_title(f"Retrieval by retriever (n={n} cases with relevant sources)\n{subtitle}",
                 fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncols=4, fontsize=8,
              frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    names.append(_save(fig, out, "recall-at-k.png"))

    data = {m: [c.latency_ms for c in r.cases if c.predicted != "error"]
            for m, r in run.modes.items()}
    top = max((max(v) for v in data.values() if v), default=1.0)
    bins = [top * i / 40 for i in range(41)]
    fig, axes = plt.subplots(len(data), 1, figsize=(7, 1.2 + 1.6 * len(data)), sharex=True,
                             squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (ax, (m, values)) in enumerate(zip(axes[:, 0], data.items(), strict=True)):
        lat = run.modes[m].metrics
        ax.hist(values, bins=bins, color=colours[i % len(colours)], alpha=0.8)
        for q, style in ((lat.latency_p50_ms, "-"), (lat.latency_p95_ms, "--")):
            if q is not None:
                ax.axvline(q, color="black", linestyle=style, linewidth=1)
        ax.set_ylabel(m)
        ax.text(0.99, 0.9, f"p50 {_fmt(lat.latency_p50_ms, '_ms')} ms (solid) · "
                f"p95 {_fmt(lat.latency_p95_ms, '_ms')} ms (dashed)",
                transform=ax.transAxes, ha="right", va="top", fontsize=8)
    axes[-1, 0].set_xlabel("latency per ask (ms)")
    fig.suptitle(f"Latency per question, cases per bin\n{subtitle}", fontsize=10)
    fig.tight_layout()
    names.append(_save(fig, out, "latency.png"))
    return names


def _save(fig: object, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(out / name, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return name


def write_report(run: EvalRun, out: Path) -> list[Path]:
    """latest.md, latest.json, cases.jsonl and the plots, into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    plots = plot(run, out)
    md = out / "latest.md"
    md.write_text(markdown(run, plots), encoding="utf-8")
    js = out / "latest.json"
    js.write_text(json.dumps(summary_json(run), indent=2, ensure_ascii=False) + "\n",
                  encoding="utf-8")
    cases = out / "cases.jsonl"
    with cases.open("w", encoding="utf-8") as handle:
        for mode, result in run.modes.items():
            for c in result.cases:
                row = {"mode": mode, **c.model_dump(mode="json")}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return [md, js, cases, *(out / p for p in plots)]


def write_ragas(run: EvalRun, out: Path) -> list[Path]:
    """One JSONL per retriever with RAGAS SingleTurnSample columns (abstentions included)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for mode, result in run.modes.items():
        path = out / f"ragas-{mode}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for c in result.cases:
                row = {"user_input": c.question, "retrieved_contexts": c.contexts,
                       "response": c.response, "reference": c.reference}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


def format_summary(run: EvalRun) -> str:
    """A compact terminal table: the headline metrics per retriever."""
    keys = ("tier_accuracy", "abstention_precision", "abstention_recall", "recall_at_1",
            "recall_at_3", "recall_at_5", "mrr", "ndcg_at_5", "citation_validity",
            "citation_hit_rate", "key_fact_coverage", "latency_p50_ms", "latency_p95_ms")
    width = max(len(k) for k in keys)
    lines = [f"Evaluation {stamp(run)}",
             f"{'':{width}}  " + "  ".join(f"{m:>8}" for m in run.modes)]
    for k in keys:
        lines.append(f"{k:{width}}  " + "  ".join(
            f"{_fmt(getattr(r.metrics, k), k):>8}" for r in run.modes.values()))
    for k in ("lead_knowledge", "lead_all", "population_conflicts", "attribution",
              "stock_sentences", "stock_knowledge", "stock_vignettes"):
        values = [getattr(r.metrics.narrative, k) if r.metrics.narrative else None
                  for r in run.modes.values()]
        lines.append(f"{k:{width}}  " + "  ".join(
            f"{v if isinstance(v, int) else _fmt(v):>8}" for v in values))
    failed = {m: sum(bool(c.failures) for c in r.cases) for m, r in run.modes.items()}
    lines.append("failed cases: " + ", ".join(f"{m} {n}" for m, n in failed.items()))
    return "\n".join(lines)
