"""The benchmark's arithmetic and report (the measurements themselves run in `make bench`, never in tests)."""

from __future__ import annotations

import json

import pytest

from benchmarks.report import markdown
from benchmarks.run import lambda_costs
from tests.conftest import REPO_DIR


def test_lambda_cost_follows_the_cpu_credit_and_the_price_list():
    rows = {row["memory_mb"]: row for row in lambda_costs(latency_1_thread_ms=84.0, latency_2_threads_ms=53.0)}

    assert rows[1769] == {
        "memory_mb": 1769,
        "threads": 1,
        "latency_ms": 84.0,
        "usd_per_million": pytest.approx(
            1e6 * (0.084 * 1769 / 1024 * 0.0000166667 + 0.20 / 1e6 + 1.00 / 1e6), abs=0.01
        ),
    }
    assert rows[1024]["latency_ms"] == pytest.approx(84.0 * 1769 / 1024, abs=0.1)  # less than one vCPU of credit
    assert rows[3538]["threads"] == 2 and rows[3538]["latency_ms"] == 53.0


def test_committed_results_render_as_the_report_tables():
    results = json.loads((REPO_DIR / "benchmarks" / "results" / "bench.json").read_text())
    report = markdown(results)

    assert "| LiteRT 2.3 (ours) |" in report and "| tflite-runtime 2.14 |" in report
    for model in ("cat-breeds-34", "cat-breeds-12"):  # the default and the previous one: its latency budget
        assert report.count(f"| {model} (Lite2, float16, 260 px) |") == 8  # summary, 4 warm, cold, cost, provisioned
    assert report.count("| starter (float16, 224 px) |") == 8
    assert "Handler p50, 1 thread(s): the default model" in report and "the previous default (12 breeds)" in report
    assert f"{results['runtime_dependencies_mb']} MB" in report


def test_the_tagging_scale_follows_the_measured_time_and_the_s3_prefix_limit():
    from benchmarks.tagging_scale import scale

    row = scale("m", photos_per_s_1t=25.0, photos=1_000_000)  # 40 ms a photo + 4 S3 calls of 30 ms

    assert row.task_s == pytest.approx(0.160)
    assert row.batch_usd == pytest.approx(0.25 + 1.00)
    assert row.s3_usd == pytest.approx(3 * 0.40 + 5.00)
    assert row.lambda_usd == pytest.approx(1e6 * (0.160 * 1769 / 1024 * 0.0000166667 + 0.20 / 1e6))
    assert row.hours_by_concurrency[100] == pytest.approx(1e6 * 0.160 / 100 / 3600)
    assert row.hours_by_concurrency[1000] == pytest.approx(1e6 / 3500 / 3600)  # capped by one prefix's writes


def test_the_committed_tagging_scale_and_the_deploy_guide_quote_the_last_benchmark():
    from benchmarks.tagging_scale import table

    results = json.loads((REPO_DIR / "benchmarks" / "results" / "bench.json").read_text())
    generated = table(results)

    assert (REPO_DIR / "benchmarks" / "results" / "tagging_scale.md").read_text() == generated
    assert generated in (REPO_DIR / "docs" / "deploy.md").read_text(), "run `make bench` and paste tagging_scale.md"


def test_the_benchmarks_page_quotes_the_last_runs_tables_as_they_are():
    from benchmarks.report import summary_table

    page = (REPO_DIR / "docs" / "benchmarks.md").read_text()
    results = json.loads((REPO_DIR / "benchmarks" / "results" / "bench.json").read_text())
    loadtest = (REPO_DIR / "benchmarks" / "results" / "loadtest.md").read_text()

    assert summary_table(results) in page
    assert summary_table(results) in (REPO_DIR / "benchmarks" / "results" / "bench.md").read_text()
    assert "\n".join(line for line in loadtest.splitlines() if line.startswith("|")) in page


def test_the_benchmarks_page_quotes_the_last_image_cold_starts_as_they_are():
    from benchmarks.image import markdown as image_report

    page = (REPO_DIR / "docs" / "benchmarks.md").read_text()
    results = json.loads((REPO_DIR / "benchmarks" / "results" / "image.json").read_text())
    report = image_report(results)

    assert report == (REPO_DIR / "benchmarks" / "results" / "image.md").read_text()
    assert "\n".join(line for line in report.splitlines() if line.startswith("|")) in page
    assert set(results["variants"]) == {"the image as built", "with botocore patched for X-Ray (before)"}


def test_the_security_page_quotes_the_last_runs_decode_memory_table_as_it_is():
    from benchmarks.decode_memory import markdown as decode_memory_table
    from lambda_function.datapath.preprocessing import DECODE_MEMORY_BUDGET_BYTES

    results = json.loads((REPO_DIR / "benchmarks" / "results" / "bench.json").read_text())
    generated = decode_memory_table(results["decode_memory"], DECODE_MEMORY_BUDGET_BYTES / 1e6)
    table = "\n".join(line for line in generated.splitlines() if line.startswith("|"))

    assert table in (REPO_DIR / "docs" / "security.md").read_text()


def test_the_deploy_guide_quotes_the_provisioned_concurrency_costs_of_the_last_run():
    from benchmarks.report import provisioned_concurrency_table

    results = json.loads((REPO_DIR / "benchmarks" / "results" / "bench.json").read_text())
    table = provisioned_concurrency_table(results)

    assert table in (REPO_DIR / "docs" / "deploy.md").read_text()
    assert table.rstrip() in (REPO_DIR / "benchmarks" / "results" / "bench.md").read_text()
    assert "$18.66" in table  # 1769 MB for 30 days at the provisioned price (benchmarks/prices.py)


def test_the_int8_decision_quotes_the_last_side_by_side_run():
    results = json.loads((REPO_DIR / "benchmarks" / "results" / "int8_decision.json").read_text())
    held, speed = results["held_back_test"], results["speed_1_thread"]
    float16, int8 = held["figures"]["float16.tflite"], held["figures"]["int8.tflite"]
    rows = {
        "breed top-1, held-back test cats": (float16["cat_breed_top1"], int8["cat_breed_top1"]),
        "coat right of those given, held-back test": (
            float16["coat_right_of_answered"],
            int8["coat_right_of_answered"],
        ),
    }
    expected = [f"| {name} | {a:.1%} | {b:.1%} |" for name, (a, b) in rows.items()]
    agreement = held["breed_identified_agreement"]
    expected.append(f"| `breed_identified` the same, held-back test photos ({held['photos']}) | | {agreement:.1%} |")
    for kind in ("load", "request"):
        a, b = (speed[name][f"{kind}_ms_p50"] for name in ("float16.tflite", "int8.tflite"))
        expected.append(f" | {a} ms | {b} ms |")

    for document in ("model.md", "benchmarks.md"):
        page = (REPO_DIR / "docs" / document).read_text()
        for row in expected:
            assert row in page, (document, row)
