"""The benchmark's tables (markdown) and chart (PNG), from the results of `benchmarks.run`."""

from __future__ import annotations

from pathlib import Path

from lambda_function.settings import LAMBDA_MB_PER_VCPU


def _engine_table(engines: list[dict]) -> list[str]:
    by_setup: dict[str, dict[int, dict]] = {}
    for row in engines:
        by_setup.setdefault(row["setup"], {})[row["threads"]] = row
    ours = next(runs for runs in by_setup.values() if any(run.get("ours") for run in runs.values()))
    lines = [
        "| B4 380x380, float32 unless said | 1 thread (ms) | 2 threads (ms) | ours faster by (2 threads) |",
        "| --- | --- | --- | --- |",
    ]
    for setup, runs in by_setup.items():
        cells = []
        for threads in (1, 2):
            run = runs.get(threads, {})
            cells.append(f"{run['median_ms']:.1f}" if "median_ms" in run else f"fails: {run.get('error', '?')[:60]}")
        theirs = runs.get(2, {}).get("median_ms")
        ratio = f"{theirs / ours[2]['median_ms']:.2f}x" if theirs and "median_ms" in ours.get(2, {}) else "-"
        lines.append(f"| {setup} | {cells[0]} | {cells[1]} | {ratio} |")
    return lines


def _serving_table(serving: dict) -> list[str]:
    lines = [
        "| model | threads | draft | decode | resize | inference | JSON | total p50 | total p95 | handler p50 "
        "| handler / inference |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, figures in serving.items():
        for key, warm in figures["warm"].items():
            threads, draft = key.split("_draft_")
            lines.append(
                f"| {name} | {threads[:-1]} | {draft} | {warm['decode_p50_ms']} | {warm['resize_p50_ms']} "
                f"| {warm['inference_p50_ms']} | {warm['json_p50_ms']} | {warm['total_p50_ms']} "
                f"| {warm['total_p95_ms']} | {warm['handler_p50_ms']} "
                f"| {warm['handler_p50_ms'] / warm['inference_p50_ms']:.2f}x |"
            )
    return lines


def _default_against_previous(serving: dict) -> list[str]:
    """The default model's handler p50 against the previous defaults', all measured in this run: the 12-breed
    model's is the 34-breed default's latency budget (at most 1.5 times, docs/model.md)."""
    from benchmarks.measured_models import DEFAULT_NAME, PREVIOUS_NAME, STARTER_NAME

    lines = []
    for before_name, what in ((PREVIOUS_NAME, "the previous default (12 breeds)"), (STARTER_NAME, "the starter")):
        if DEFAULT_NAME not in serving or before_name not in serving:
            continue
        for threads in (1, 2):
            ours, before = (
                serving[name]["warm"][f"{threads}t_draft_on"]["handler_p50_ms"] for name in (DEFAULT_NAME, before_name)
            )
            lines.append(
                f"Handler p50, {threads} thread(s): the default model {ours} ms, {what} {before} ms: "
                f"{ours / before:.2f} times."
            )
    return lines


def summary_table(results: dict) -> str:
    """The handler, cold start, memory and cost of each model at a glance: the table docs/benchmarks.md quotes."""
    lines = [
        "| model | handler p50, 1 thread | handler p50, 2 threads | cold start p50 | peak RSS "
        f"| cost per million at {LAMBDA_MB_PER_VCPU} MB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, figures in results["serving"].items():
        one, two = (figures["warm"][f"{threads}t_draft_on"]["handler_p50_ms"] for threads in (1, 2))
        cost = next(row for row in figures["lambda_costs"] if row["memory_mb"] == LAMBDA_MB_PER_VCPU)["usd_per_million"]
        lines.append(
            f"| {name} | {one:.1f} ms | {two:.1f} ms | {figures['cold_start_p50_ms'] / 1000:.2f} s "
            f"| {figures['peak_rss_mb']} MB | ${cost:.2f} |"
        )
    return "\n".join(lines) + "\n"


def provisioned_concurrency_table(results: dict) -> str:
    """What keeping one execution environment initialised costs at the template's memory, against the cold start it
    spares a user: the table docs/deploy.md quotes."""
    from benchmarks.prices import (
        LAMBDA_PROVISIONED_DURATION_USD_PER_GB_SECOND,
        LAMBDA_PROVISIONED_USD_PER_GB_SECOND,
        SECONDS_PER_MONTH,
    )

    gigabytes = LAMBDA_MB_PER_VCPU / 1024
    per_month = gigabytes * SECONDS_PER_MONTH * LAMBDA_PROVISIONED_USD_PER_GB_SECOND
    lines = [
        f"| model | cold start p50 | one environment kept warm at {LAMBDA_MB_PER_VCPU} MB, a month "
        "| its duration, per million predictions |",
        "| --- | --- | --- | --- |",
    ]
    for name, figures in results["serving"].items():
        seconds = figures["warm"]["1t_draft_on"]["handler_p50_ms"] / 1000
        duration = 1e6 * seconds * gigabytes * LAMBDA_PROVISIONED_DURATION_USD_PER_GB_SECOND
        lines.append(f"| {name} | {figures['cold_start_p50_ms'] / 1000:.2f} s | ${per_month:.2f} | ${duration:.2f} |")
    return "\n".join(lines) + "\n"


def markdown(results: dict) -> str:
    machine = results["machine"]
    lines = [
        f"Benchmark run on {machine['cpu']} ({machine['cpus']} CPUs; {', '.join(machine['instruction_sets'])}), "
        f"Python {machine['python']}, {results['seconds']} s.",
        "",
        "At a glance:",
        "",
        summary_table(results).rstrip(),
        "",
        "Engines side by side:",
        "",
        *_engine_table(results["engines"]),
        "",
        f"Warm latency in ms on a 12-megapixel JPEG ({results['photo_bytes'] / 1e6:.1f} MB), p50 of 20 runs; "
        "the handler column is the whole Lambda handler with the photo as base64 in a REST event:",
        "",
        *_serving_table(results["serving"]),
        "",
        "| model | cold start p50 (ms) | peak RSS (MB) | tagging photos/s (1 thread) |",
        "| --- | --- | --- | --- |",
    ]
    for name, figures in results["serving"].items():
        lines.append(
            f"| {name} | {figures['cold_start_p50_ms']} | {figures['peak_rss_mb']} "
            f"| {figures['tagging_photos_per_s_1t']} |"
        )
    lines += ["", *_default_against_previous(results["serving"])]
    lines += [
        "",
        f"Runtime dependencies installed (requirements.txt): {results['runtime_dependencies_mb']} MB.",
        "",
        "Lambda cost per million predictions (handler p50 on the 12-megapixel photo, HTTP API included):",
        "",
        "| model | "
        + " | ".join(f"{row['memory_mb']} MB" for row in next(iter(results["serving"].values()))["lambda_costs"])
        + " |",
        "| --- |" + " --- |" * len(next(iter(results["serving"].values()))["lambda_costs"]),
    ]
    for name, figures in results["serving"].items():
        cells = [
            f"${row['usd_per_million']} ({row['latency_ms']:.0f} ms, {row['threads']}t)"
            for row in figures["lambda_costs"]
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Provisioned concurrency (the template's ProvisionedConcurrency parameter), against the cold start it spares:",
        "",
        provisioned_concurrency_table(results).rstrip(),
    ]
    if "decode_memory" in results:
        from benchmarks.decode_memory import markdown as decode_memory_table
        from lambda_function.datapath.preprocessing import DECODE_MEMORY_BUDGET_BYTES

        lines += ["", decode_memory_table(results["decode_memory"], DECODE_MEMORY_BUDGET_BYTES / 1e6).rstrip()]
    return "\n".join(lines) + "\n"


def chart(results: dict, path: Path) -> None:
    import matplotlib.ticker

    from training.plots import pyplot

    plt = pyplot()

    rows = [r for r in results["engines"] if "median_ms" in r]
    labels = sorted({r["setup"] for r in rows}, key=lambda s: [r["setup"] for r in rows].index(s))
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    for offset, threads in ((-0.2, 1), (0.2, 2)):
        values = [
            next((r["median_ms"] for r in rows if r["setup"] == s and r["threads"] == threads), 0) for s in labels
        ]
        left.barh([i + offset for i in range(len(labels))], values, height=0.4, label=f"{threads} thread(s)")
    left.set_yticks(range(len(labels)), labels, fontsize=8)
    left.invert_yaxis()
    left.set_xscale("log")
    left.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_xlabel("ms per image (log scale)")
    left.set_title("EfficientNetB4 380x380: engines and modes")
    left.legend()
    names, steps = list(results["serving"]), ("decode", "resize", "inference", "json")
    bottoms = [0.0] * len(names)
    for step in steps:
        values = [results["serving"][n]["warm"]["1t_draft_on"][f"{step}_p50_ms"] for n in names]
        right.bar(names, values, bottom=bottoms, label=step)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    right.set_ylabel("ms, p50, 1 thread, draft decoding on")
    right.set_title("12-megapixel photo: where the time goes")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
