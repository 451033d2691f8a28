"""The benchmark harness (lowbit.benchmark) and bench/compare.py: the peers and measurements of
issue 11 item 5 on tiny shapes. Nothing here asserts a timing."""
from __future__ import annotations

import json

import pytest

import lowbit
from lowbit.benchmark import measure, methods, report, runner
from conftest import bench_module

TINY = dict(K=64, N=48, threads=1, cold=False, repeats=1, min_seconds=0.0)


def _measure(method, Ms=(1, 5)):
    rows = measure.measure_many(method, list(Ms), **TINY)
    assert [r["M"] for r in rows] == list(Ms)
    for r in rows:
        assert r["status"] == "ok", r
    return rows


def test_int8_suite_has_the_new_columns():
    compare = bench_module("compare")
    names = compare.suite_methods("int8", list(methods.METHODS))
    for m in ("lowbit_matmul_integer", "lowbit_matmul_integer_plain_b", "torch_int_mm",
              "torchao_int8_dynamic", "torchao_int8_dynamic_compiled", "ort_matmul_integer",
              "ort_dynamic", "torch_dynamic", "numpy_f32"):
        assert m in names
        assert compare.method_note(m), m
    assert not [m for m in names if "_g" in m]


def test_plain_b_matmul_integer_is_exact():
    rows = _measure("lowbit_matmul_integer_plain_b")
    assert all(r["check"] == "exact" and r["isa"] == lowbit.get_isa() for r in rows)


def test_torch_int_mm_is_exact_on_the_shifted_operands():
    pytest.importorskip("torch")
    assert all(r["check"] == "exact" for r in _measure("torch_int_mm"))


def test_torchao_eager():
    pytest.importorskip("torch")
    pytest.importorskip("torchao")
    rows = _measure("torchao_int8_dynamic", Ms=(3,))
    assert rows[0]["check"].startswith("rel_rms_err=") and rows[0]["torchao"]


def test_missing_peer_is_a_skipped_row(monkeypatch):
    monkeypatch.setattr(runner, "missing_requirements", lambda method: ["torchao"])
    rows = runner.run_method_batch("torchao_int8_dynamic", [1, 2], 64, 48, 1, False, 1)
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert "torchao not installed" in report.to_markdown(rows)


def test_pack_weight_rows_in_process_and_in_a_worker():
    rows = measure.measure_pack(64, 48, 1, repeats=1, min_seconds=0.0)
    assert [r["method"] for r in rows] == list(measure.PACK_KINDS)
    assert all(r["status"] == "ok" and r["gbps"] > 0 and r["weight_bytes"] == 64 * 48 for r in rows)
    rows = runner.run_pack_subprocess(64, 48, 1, repeats=1, min_seconds=0.0)
    assert [(r["method"], r["status"], r["K"], r["N"], r["threads"]) for r in rows] == \
        [(kind, "ok", 64, 48, 1) for kind in measure.PACK_KINDS]


def _row(method, M, gops, threads=1, K=64, N=48):
    return {"method": method, "M": M, "K": K, "N": N, "threads": threads, "cold": False,
            "status": "ok", "gops": gops, "seconds": 2.0 * M * K * N / gops / 1e9}


def test_report_ratio_table_and_pack_table():
    rows = [_row("lowbit_matmul_integer", 4, 200.0), _row("ort_matmul_integer", 4, 100.0),
            _row("torch_int_mm", 4, 50.0), _row("lowbit_matmul_integer_plain_b", 4, 100.0),
            _row("lowbit_linear", 4, 90.0), _row("torchao_int8_dynamic", 4, 30.0),
            _row("torchao_int8_dynamic_compiled", 4, 60.0),
            {"method": "pack_weight_f32", "K": 64, "N": 48, "threads": 2, "status": "ok",
             "seconds": 1e-3, "gbps": 64 * 48 / 1e-3 / 1e9}]
    text = report.to_markdown(rows)
    header = next(line for line in text.splitlines() if "/ ort_matmul_integer" in line)
    cells = [c.strip() for c in header.strip("|").split("|")]
    values = dict(zip(cells, next(line for line in text.splitlines()[text.splitlines().index(
        header) + 2:]).strip("|").split("|")))
    assert values["lowbit_matmul_integer / ort_matmul_integer"].strip() == "2.00x"
    assert values["lowbit_matmul_integer / torch_int_mm"].strip() == "4.00x"
    assert values["lowbit_matmul_integer_plain_b / lowbit_matmul_integer"].strip() == "0.50x"
    assert values["lowbit_linear / best of (torchao_int8_dynamic, "
                  "torchao_int8_dynamic_compiled)"].strip() == "1.50x"
    assert "### pack_weight" in text and "| 64 | 48 | 2 | pack_weight_f32 |" in text


def test_compare_writes_one_file_per_machine_class(tmp_path, monkeypatch):
    compare = bench_module("compare")
    harness = compare.load_harness()
    seen = {}

    def fake_grid(Ms, shapes, threads_list, methods_, repeats, cold_shapes=(), rounds=1,
                  pack_shapes=(), **kw):
        seen.update(pack_shapes=pack_shapes, methods=methods_)
        return [_row("lowbit_matmul_integer", 1, 10.0), _row("ort_matmul_integer", 1, 5.0)]
    monkeypatch.setattr(harness, "run_grid", fake_grid)
    monkeypatch.setattr(harness, "plot", lambda rows, path: False)
    monkeypatch.setattr(compare, "load_harness", lambda: harness)
    args = ["--out-dir", str(tmp_path), "--threads", "1", "--methods",
            "lowbit_matmul_integer,ort_matmul_integer"]
    assert compare.main(args) == 0
    assert seen["pack_shapes"] == list(compare.PACK_SHAPES)
    isa = lowbit.cpu_info()["isa"]
    data = json.loads((tmp_path / f"bench_{isa}.json").read_text())
    assert data["machine"]["lowbit"]["isa"] == isa
    flags = data["machine"]["cpu_flags"]
    assert set(flags) <= set(compare.LOWBIT_FLAGS) and all(isinstance(v, bool) for v in flags.values())
    text = (tmp_path / f"bench_{isa}.md").read_text()
    assert text.startswith("# lowbit benchmark on ") and f"lowbit path {isa}" in text
    assert "| lowbit path that ran | " + isa in text and "CPU flags" in text

    assert compare.main(args + ["--out-name", "bench_other", "--pack-shapes", "none"]) == 0
    assert (tmp_path / "bench_other.md").exists() and seen["pack_shapes"] == []
    assert compare.main(args + ["--suite", "int4", "--methods", "numpy_f32"]) == 0
    assert (tmp_path / f"bench_int4_{isa}.md").exists() and seen["pack_shapes"] == []


def test_conv_suite_on_a_tiny_shape(tmp_path):
    """bench/compare.py --suite conv end to end (real workers) on one tiny layer shape: the
    exactness check of lowbit_conv_integer against the int64 convolution passes and the files
    are written."""
    compare = bench_module("compare")
    args = ["--suite", "conv", "--out-dir", str(tmp_path), "--threads", "1", "--quick",
            "--conv-shapes", "8-8-6x6-k3-p1-g8,4-6-5x5-k3", "--batches", "1,2", "--repeats", "1",
            "--methods", "lowbit_conv,lowbit_conv_integer", "--model-batches", "none",
            "--out-name", "conv_tiny"]
    assert compare.main(args) == 0
    data = json.loads((tmp_path / "conv_tiny.json").read_text())
    rows = data["rows"]
    assert {r["method"] for r in rows} == {"lowbit_conv", "lowbit_conv_integer"}
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows), rows
    text = (tmp_path / "conv_tiny.md").read_text()
    assert "int exact" in text and "convolutions on" in text
    with pytest.raises(SystemExit):
        compare.main(args[:-2] + ["--conv-shapes", "3-3-bad"])
