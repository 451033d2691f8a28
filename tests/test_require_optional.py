"""LOWBIT_REQUIRE_OPTIONAL=1 (tests/conftest.py): a missing optional dependency fails instead of
skipping, both inside a test and at a test file's import."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REQUIRE_OPTIONAL

MISSING = "lowbit_no_such_optional_module"


def test_importorskip_skips_or_fails(monkeypatch):
    monkeypatch.delenv(REQUIRE_OPTIONAL, raising=False)
    with pytest.raises(pytest.skip.Exception):
        pytest.importorskip(MISSING)
    monkeypatch.setenv(REQUIRE_OPTIONAL, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_OPTIONAL}=1.*'{MISSING}'"):
        pytest.importorskip(MISSING)
    with pytest.raises(pytest.fail.Exception, match="numpy"):
        pytest.importorskip("numpy", minversion="999")   # too old counts as missing
    assert pytest.importorskip("numpy") is np   # present: returned as before
    monkeypatch.setenv(REQUIRE_OPTIONAL, "0")
    with pytest.raises(pytest.skip.Exception):
        pytest.importorskip(MISSING)


def test_a_file_that_needs_a_missing_module_fails_collection(tmp_path):
    """The module-level `torch = pytest.importorskip("torch")` pattern of the test files: one
    skip of the whole file without the variable, a collection error with it."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(f"import pytest\n{MISSING} = pytest.importorskip({MISSING!r})\n\n"
                     "def test_never():\n    pass\n")
    tests = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tests)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))

    def run(value):
        env.pop(REQUIRE_OPTIONAL, None)
        if value is not None:
            env[REQUIRE_OPTIONAL] = value
        # -p conftest loads this suite's conftest as a plugin for a file outside tests/
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest",
                               "-p", "no:cacheprovider", str(probe)], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
    skipped = run(None)
    assert "1 skipped" in skipped.stdout, skipped.stdout   # (exit 5: the file ran no test)
    assert skipped.returncode == pytest.ExitCode.NO_TESTS_COLLECTED
    failed = run("1")
    assert "1 error" in failed.stdout, failed.stdout
    assert failed.returncode == pytest.ExitCode.INTERRUPTED   # a collection error
    assert f"{REQUIRE_OPTIONAL}=1 and the optional dependency '{MISSING}'" in failed.stdout
