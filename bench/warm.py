"""Warm ``Assistant.ask`` latency beside its floor, and the rules engine in microseconds.

The floor is what no answer can avoid: one query embedding plus one Chroma query (at the depth
the hybrid retriever asks for). Both are timed for the same question back to back, so a noisy
moment on a shared machine hits both sides of the ratio.
"""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import apply_env, questions, summary_ms, time_calls


def run(data_dir: Path, rounds: int) -> dict[str, Any]:
    apply_env()
    from assistant import Assistant, InputError, Settings

    settings = Settings(data_dir=data_dir)
    assistant = Assistant.from_settings(settings)
    assistant.warm_up()
    embedder, index = assistant.components.embedder, assistant.components.index
    assert index is not None
    asked, origin = questions()
    for question in asked[:10]:  # warm every path once (scope, rules, compose, audit)
        assistant.ask(question)

    embed_s: list[float] = []
    chroma_s: list[float] = []
    floor_s: list[float] = []
    ask_s: list[float] = []
    paired: list[float] = []
    rejected = 0
    for _ in range(rounds):
        for question in asked:
            t0 = time.perf_counter()
            vector = embedder.embed_query(question)
            t1 = time.perf_counter()
            index.query(vector, settings.candidates)
            t2 = time.perf_counter()
            try:
                assistant.ask(question, surface="eval")
            except InputError:
                rejected += 1
                continue
            t3 = time.perf_counter()
            embed_s.append(t1 - t0)
            chroma_s.append(t2 - t1)
            floor_s.append(t2 - t0)
            ask_s.append(t3 - t2)
            paired.append((t3 - t2) / (t2 - t0))

    sample = asked[: min(len(asked), 40)]
    cycle = itertools.cycle(sample)
    bm25 = summary_ms(time_calls(lambda: assistant.components.bm25.retrieve(next(cycle),
                                                                   settings.candidates), 200))
    hybrid = summary_ms(time_calls(lambda: assistant.components.retriever.retrieve(next(cycle),
                                                                          settings.top_k), 80))
    ask = summary_ms(ask_s)
    floor = summary_ms(floor_s)
    return {
        "questions": origin,
        "rounds": rounds,
        "asks": len(ask_s),
        "rejected_as_bad_input": rejected,
        "ask": ask,
        "floor": floor,
        "embed_query": summary_ms(embed_s),
        "chroma_query": summary_ms(chroma_s),
        "bm25_retrieve": bm25,
        "hybrid_retrieve": hybrid,
        "ratio_p50": round(ask["p50_ms"] / floor["p50_ms"], 3),
        "ratio_paired_median": round(statistics.median(paired), 3),
        "overhead_p50_ms": round(ask["p50_ms"] - floor["p50_ms"], 2),
        "goal_ratio": 1.5,
        "audit_failures": assistant.audit.failures if assistant.audit else None,
        "rules": rules_engine(assistant),
    }


def rules_engine(assistant: Any, rounds: int = 250) -> dict[str, Any]:
    """RuleTable.recommend over every combination of the four findings (81), many times."""
    from assistant.types import Findings

    values = {
        "symptomatic": (True, False, None),
        "location": ("central", "peripheral", None),
        "hemodynamic_instability": (True, False, None),
        "intracardiac_cement": (True, False, None),
    }
    cases = [
        Findings.model_validate(dict(zip(values, combo, strict=True)))
        for combo in itertools.product(*values.values())
    ]
    table = assistant.components.rules
    for findings in cases:  # warm
        table.recommend(findings)
    per_call_us = []
    for _ in range(rounds):
        start = time.perf_counter()
        for findings in cases:
            table.recommend(findings)
        per_call_us.append((time.perf_counter() - start) / len(cases) * 1e6)
    return {
        "calls": rounds * len(cases),
        "cases": len(cases),
        "p50_us": round(statistics.median(per_call_us), 2),
        "p95_us": round(sorted(per_call_us)[int(0.95 * len(per_call_us)) - 1], 2),
        "min_us": round(min(per_call_us), 2),
    }
