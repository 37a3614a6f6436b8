"""Render bench.json as the Markdown tables of bench/results/bench.md (and bench/LATEST.md)."""

from __future__ import annotations

from typing import Any


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    return [_row(*head), _row(*("---" for _ in head)), *(_row(*r) for r in rows)]


def markdown(r: dict[str, Any]) -> str:
    env = r["environment"]
    lines = [
        "# PCE Assistant benchmarks",
        "",
        f"Run {env['when']} at commit {env['commit']} ({r['mode']} mode, "
        f"{r.get('total_seconds', '?')} s); Python {env['python']}, {env['cpus']} CPUs; "
        f"load average {env['load_average_start']} at start, "
        f"{env.get('load_average_end', '?')} at end (a shared machine: compare ratios).",
        "",
    ]
    if "warm" in r:
        w = r["warm"]
        a, f = w["ask"], w["floor"]
        lines += [
            "## Warm `ask` latency vs its floor",
            "",
            f"{w['asks']} asks ({w['questions']}, {w['rounds']} round(s)); floor = one query "
            "embedding + one Chroma query, timed for the same question just before its ask.",
            "",
            *_table(
                ("what", "p50 ms", "p95 ms", "mean ms"),
                [
                    ("`Assistant.ask` (warm, audited)", a["p50_ms"], a["p95_ms"], a["mean_ms"]),
                    ("floor: embed + Chroma query", f["p50_ms"], f["p95_ms"], f["mean_ms"]),
                    ("  query embedding", w["embed_query"]["p50_ms"], w["embed_query"]["p95_ms"],
                     w["embed_query"]["mean_ms"]),
                    ("  Chroma query (k=20)", w["chroma_query"]["p50_ms"],
                     w["chroma_query"]["p95_ms"], w["chroma_query"]["mean_ms"]),
                    ("BM25 retrieve (k=20)", w["bm25_retrieve"]["p50_ms"],
                     w["bm25_retrieve"]["p95_ms"], w["bm25_retrieve"]["mean_ms"]),
                    ("hybrid retrieve (embed + dense + BM25 + RRF)",
                     w["hybrid_retrieve"]["p50_ms"], w["hybrid_retrieve"]["p95_ms"],
                     w["hybrid_retrieve"]["mean_ms"]),
                ],
            ),
            "",
            f"**Ratio ask/floor at p50: {w['ratio_p50']}** (median of per-question ratios "
            f"{w['ratio_paired_median']}; goal ≤ {w['goal_ratio']}); overhead over the floor "
            f"{w['overhead_p50_ms']} ms at p50.",
            "",
        ]
        rules = w["rules"]
        lines += [
            "## Rules engine",
            "",
            f"`RuleTable.recommend` over all {rules['cases']} combinations of the four findings, "
            f"{rules['calls']:,} calls: **{rules['p50_us']} µs per call at p50** "
            f"(p95 {rules['p95_us']} µs, best {rules['min_us']} µs).",
            "",
        ]
    if "cold_start" in r or "index_build" in r:
        lines += ["## Cold start and index build", ""]
        rows: list[tuple[Any, ...]] = []
        if "cold_start" in r:
            c = r["cold_start"]
            m = c["median"]
            rows += [
                (f"cold start: process spawn to first answer (median of {len(c['runs'])})",
                 f"**{m['to_first_answer_s']}**"),
                ("  `from assistant import Assistant`", m["import_s"]),
                ("  `Assistant.from_settings()` (knowledge, rules, index open)",
                 m["from_settings_s"]),
                ("  first `ask`", m["first_ask_s"]),
                ("    of which the model: hash check, import, load", m["model_load_s"]),
                ("  CPU time of the process (to the answer)", m["cpu_s"]),
                ("  whole subprocess, exit included", m["subprocess_wall_s"]),
            ]
        if "index_build" in r:
            b = r["index_build"]
            rows += [
                (f"index build, fresh data dir (subprocess wall; {b['passages']} passages, "
                 f"{b['sources']} sources)", f"**{b['subprocess_wall_s']}**"),
                ("  load + validate knowledge", b["load_knowledge_s"]),
                ("  model hash check + load", b["model_load_s"]),
                ("  embed + write the collection", b["build_s"]),
            ]
        lines += [*_table(("what", "seconds"), rows), ""]
        if "cold_start" in r:
            c = r["cold_start"]
            if c.get("set_aside_rebuilt"):
                lines += [f"({len(c['set_aside_rebuilt'])} run(s) set aside: the knowledge "
                          "changed under the benchmark and the index was rebuilt.)", ""]
            lines += [
                f"Goal: first answer under {c['goal_s']} s. Heavy modules loaded by "
                f"`import assistant`: {c['heavy_at_import'] or 'none'}; after "
                f"`from_settings`: {c['heavy_after_factory'] or 'none'} (the model stack "
                "loads on the first ask or `warm_up()`).",
                "",
            ]
    if "scale" in r:
        rows = []
        for s in r["scale"]:
            e = s["embedded"]
            srv = s.get("server")
            rows.append((
                f"{s['passages']:,}",
                s["bm25_build_s"], s["bm25_rss_mb"], s["bm25_query"]["p50_ms"],
                e["build_s"], e["rss_mb"], e["dense_query"]["p50_ms"],
                e["hybrid_retrieve"]["p50_ms"],
                srv["build_s"] if srv else "–",
                srv["server_rss_mb"] if srv else "–",
                srv["dense_query"]["p50_ms"] if srv else "–",
                srv["hybrid_retrieve"]["p50_ms"] if srv else "–",
                s["peak_rss_mb"],
            ))
        lines += [
            "## Scale: synthetic passages (384-d random unit vectors, ~100-word Zipf text)",
            "",
            *_table(
                ("passages", "BM25 build s", "BM25 RSS MB", "BM25 q p50 ms",
                 "embedded build s", "embedded RSS MB", "embedded dense q p50 ms",
                 "embedded hybrid p50 ms", "server build s", "server RSS MB",
                 "server dense q p50 ms", "server hybrid p50 ms", "bench peak RSS MB"),
                rows,
            ),
            "",
            "Dense query = one Chroma query at k=20 with a precomputed vector; hybrid = "
            "`HybridRetriever` (dense + BM25 at depth 20, RRF, top 5) without the model. RSS "
            "columns are growth of the benchmark process (embedded) or the `chroma run` "
            "server's total resident memory.",
            "",
        ]
    if "http" in r:
        h = r["http"]
        lines += [
            "## HTTP throughput (`pce-assistant serve`, POST /api/v1/ask, loopback)",
            "",
            *_table(
                ("clients", "requests", "errors", "req/s", "p50 ms", "p95 ms"),
                [(x["clients"], x["requests"], x["errors"], x["rps"], x["p50_ms"], x["p95_ms"])
                 for x in h["levels"]],
            ),
            "",
            f"Server start to first /healthz {h['server_startup_s']} s; server RSS "
            f"{h['server_rss_mb']} MB after the run.",
            "",
        ]
    if "workers" in r:
        lines += _workers(r["workers"])
    return "\n".join(lines)


def _workers(w: dict[str, Any]) -> list[str]:
    rows = w["rows"]
    lines = [
        "## Worker scaling (`serve --workers N`, POST /api/v1/ask, 16 clients, loopback)",
        "",
        f"{w['requests']} requests per configuration, {w['clients']} clients, questions from "
        f"{w['questions']}, all configurations in this one run.",
        "",
        *_table(
            ("configuration", "req/s", "vs single", "p50 ms", "p95 ms", "errors",
             "workers answering", "start s", "RSS MB (all processes)"),
            [(x["label"], x["rps"], x["vs_single"], x["p50_ms"], x["p95_ms"], x["errors"],
              x["answered_by"], x["startup_s"], x["rss_mb"]) for x in rows],
        ),
        "",
    ]
    profile = w["profile"]
    if profile["samples"]:
        lines += [
            f"Where one worker's time goes (a separate `serve --workers 2` run under the same "
            f"load; py-spy at 200 Hz: {profile['samples']} busy samples, shares below; "
            f"{profile.get('waiting_samples', 0)} more of threads waiting, left out):",
            "",
            *_table(("bucket", "% of samples"), profile["buckets"]),
            "",
            "Hottest leaf functions:",
            "",
            *_table(("function", "% of samples"), profile["top_leaves"]),
            "",
        ]
    return lines
