"""Runtime dispatch and process settings: cpu_info, use_isa / set_isa, LOWBIT_ISA, threads."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import lowbit
from conftest import ALL_ISAS, ISAS


def _run_python(code, env_extra, cwd):
    env = dict(os.environ)
    env.pop("LOWBIT_ISA", None)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_cpu_info_keys_and_types():
    info = lowbit.cpu_info()
    for key in ("isa", "available", "threads", "features"):
        assert key in info, key
    assert isinstance(info["isa"], str)
    assert isinstance(info["available"], list) and info["available"]
    assert all(isinstance(n, str) for n in info["available"])
    assert info["available"][0] == "scalar"  # always usable, listed first (best last)
    assert len(set(info["available"])) == len(info["available"])
    assert info["isa"] in info["available"]
    assert isinstance(info["features"], list) and all(isinstance(f, str) for f in info["features"])
    assert isinstance(info["threads"], int) and info["threads"] == lowbit.get_num_threads() >= 1
    assert info["isa"] == lowbit.get_isa()
    # the returned dict is a copy: changing it changes nothing
    info["isa"] = "bogus"
    assert lowbit.cpu_info()["isa"] == lowbit.get_isa()


def test_available_isas_consistent_with_features():
    info = lowbit.cpu_info()
    feats = set(info["features"])
    if "avx2" in info["available"]:
        assert {"avx2", "fma"} <= feats
    if "avx512vnni" in info["available"]:
        assert {"avx512f", "avx512bw", "avx512vnni"} <= feats
    if "avxvnni" in info["available"]:
        assert "avxvnni" in feats


def test_default_isa_is_best(tmp_path):
    r = _run_python("import json, lowbit; print(json.dumps(lowbit.cpu_info()))", {}, tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    preferred = [n for n in info["available"] if n not in info["test_only"]]
    assert info["isa"] == preferred[-1]
    assert info["test_only"] == (["amx_emu"] if "amx_emu" in info["available"] + list(info["unavailable"]) else [])


def test_cpu_info_names_why_a_path_is_missing():
    info = lowbit.cpu_info()
    assert set(info["available"]).isdisjoint(info["unavailable"])
    for name, why in info["unavailable"].items():
        assert isinstance(why, str) and why, name
        with pytest.raises(RuntimeError, match=re.escape(why.split(":")[0][:30])):
            lowbit.set_isa(name)
    if "amx" in info["unavailable"]:  # the software model runs the same kernels wherever AVX-512 does
        assert ("amx_emu" in info["available"]) == ("avx512vnni" in info["available"])


@pytest.mark.parametrize("name", ISAS)
def test_set_isa_and_use_isa(name):
    before = lowbit.get_isa()
    with lowbit.use_isa(name) as active:
        assert active == name
        assert lowbit.get_isa() == name and lowbit.cpu_info()["isa"] == name
    assert lowbit.get_isa() == before
    lowbit.set_isa(name)
    assert lowbit.get_isa() == name
    lowbit.set_isa(before)


@pytest.mark.parametrize("start", ISAS)
def test_use_isa_restores_on_exception(start):
    lowbit.set_isa(start)
    for name in ISAS:
        with pytest.raises(KeyError):
            with lowbit.use_isa(name):
                assert lowbit.get_isa() == name
                raise KeyError("boom")
        assert lowbit.get_isa() == start
    # a kernel error inside the block also restores
    with pytest.raises(ValueError):
        with lowbit.use_isa(ISAS[0]):
            lowbit.quantize_linear(np.array([np.nan], np.float32), 1.0)
    assert lowbit.get_isa() == start


def test_use_isa_nested():
    outer, inner = ISAS[0], ISAS[-1]
    before = lowbit.get_isa()
    with lowbit.use_isa(outer):
        with lowbit.use_isa(inner):
            assert lowbit.get_isa() == inner
        assert lowbit.get_isa() == outer
    assert lowbit.get_isa() == before


def test_failed_use_isa_leaves_isa_unchanged():
    before = lowbit.get_isa()
    with pytest.raises(ValueError):
        with lowbit.use_isa("not-an-isa"):
            pass  # pragma: no cover
    assert lowbit.get_isa() == before
    missing = [n for n in ALL_ISAS if n not in ISAS]
    for name in missing:
        with pytest.raises(RuntimeError):
            with lowbit.use_isa(name):
                pass  # pragma: no cover
        assert lowbit.get_isa() == before


@pytest.mark.parametrize("name", ISAS)
def test_lowbit_isa_environment(tmp_path, name):
    code = ("import lowbit, numpy as np; print(lowbit.cpu_info()['isa']); "
            "print(lowbit.matmul_integer(np.full((2, 5), 255, np.uint8), "
            "np.full((5, 3), -128, np.int8)).sum())")
    r = _run_python(code, {"LOWBIT_ISA": name}, tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert out[0] == name
    assert int(out[1]) == 6 * 5 * 255 * -128


def test_lowbit_isa_scalar(tmp_path):
    r = _run_python("import lowbit; print(lowbit.cpu_info()['isa'])", {"LOWBIT_ISA": "scalar"},
                    tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "scalar"


def test_lowbit_isa_empty_means_default(tmp_path):
    r = _run_python("import lowbit; print(lowbit.cpu_info()['isa'])", {"LOWBIT_ISA": ""}, tmp_path)
    assert r.returncode == 0, r.stderr
    test_only = lowbit.cpu_info()["test_only"]
    assert r.stdout.strip() == [n for n in ISAS if n not in test_only][-1]


def test_num_threads_round_trip():
    before = lowbit.get_num_threads()
    assert before >= 1
    try:
        for n in (1, 3, 2, 7):
            lowbit.set_num_threads(n)
            assert lowbit.get_num_threads() == n
            assert lowbit.cpu_info()["threads"] == n
            # the pool works at every size
            a = np.full((64, 256), 3, np.uint8)
            b = np.full((256, 300), -2, np.int8)
            assert (lowbit.matmul_integer(a, b) == -6 * 256).all()
    finally:
        lowbit.set_num_threads(before)
    assert lowbit.get_num_threads() == before


def test_default_threads(tmp_path):
    r = _run_python("import lowbit, os; print(lowbit.get_num_threads(), len(os.sched_getaffinity(0)))",
                    {}, tmp_path)
    assert r.returncode == 0, r.stderr
    threads, cores = map(int, r.stdout.split())
    assert threads == cores
