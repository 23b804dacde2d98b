"""The readers under a bounded, seeded mutation loop (issue 15, item 5): a product or a one-line refusal, always.

Each run reads every case in a worker process capped at ``MEMORY_LIMIT_MIB`` of address space, with a time
limit per case; the bounds asserted here are the budget: one read adds at most ``READ_BUDGET_MIB`` of resident
memory (the largest product in these seeds is the real CONUS frame, 3.75 million pixels; see ingest.abi,
"Memory"). The synthetic run needs nothing but the project; the real-sample run is ``realdata``.
"""

from __future__ import annotations

import json

import pytest

from ltgcast.cli import main
from ltgcast.fuzzing import FuzzConfig, make_case, run_fuzz, sample_seeds, synthetic_seeds

READ_BUDGET_MIB = 256
CASE_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return synthetic_seeds(tmp_path_factory.mktemp("seeds"))


def _assert_contract(report, cases):
    assert report["cases"] == cases
    assert report["violations"] == []
    assert report["tracebacks"] == 0
    assert sum(report["outcomes"].values()) == cases
    assert set(report["outcomes"]) <= {"accepted", "refused"}
    assert 0 < report["read_added_rss_mib"] <= READ_BUDGET_MIB


def test_mutated_synthetic_files_give_a_product_or_a_one_line_refusal(seeds, tmp_path):
    report = run_fuzz(FuzzConfig(cases=120, seed=15, seeds=tuple(seeds), work=tmp_path, case_timeout_s=CASE_TIMEOUT_S))
    _assert_contract(report, 120)
    stages = {key.split("/")[0] for key in report["refused"]}
    assert {"decode", "shape", "empty"} <= stages  # the mutations reach every kind of check
    assert report["outcomes"]["accepted"] > 0
    assert report["flashes_dropped"] > 0
    assert set(report["mutations"]) >= {"huge_dim", "flip_bytes", "truncate", "time_2099", "nan_positions"}


@pytest.mark.realdata
def test_mutated_real_samples_give_a_product_or_a_one_line_refusal(real_data, tmp_path):
    real = sample_seeds(real_data)
    report = run_fuzz(FuzzConfig(cases=60, seed=16, seeds=tuple(real), work=tmp_path, case_timeout_s=CASE_TIMEOUT_S))
    _assert_contract(report, 60)
    assert report["outcomes"]["refused"] > 0


def test_a_case_is_reproducible_alone(seeds, tmp_path):
    first, mutations = make_case(7, 42, seeds, tmp_path / "a")
    again, mutations_again = make_case(7, 42, seeds, tmp_path / "b")
    assert mutations == mutations_again
    assert first.name == again.name
    assert first.read_bytes() == again.read_bytes()


def test_bench_fuzz_prints_numbers_and_writes_json(tmp_path, capsys):
    report_path = tmp_path / "bench" / "fuzz.json"
    assert main(["bench-fuzz", "--cases", "12", "--seed", "3", "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "12 cases from 4 seed files (seed 3)" in out
    assert "per case: max" in out
    report = json.loads(report_path.read_text())
    assert report["cases"] == 12
    assert report["max_case_s"] > 0
    assert report["read_peak_rss_mib"] > 0
    assert sum(report["outcomes"].values()) == 12
