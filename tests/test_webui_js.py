"""The tab's JavaScript tests (tests/js, node's test runner + jsdom) as part of the suite."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_javascript_tests_pass():
    node = shutil.which("node")
    if node is None:
        if os.environ.get("LORA_TRAINER_REQUIRE_JS"):
            pytest.fail("node is not installed, and LORA_TRAINER_REQUIRE_JS asks for the JS tests.")
        pytest.skip("node is not installed (set LORA_TRAINER_REQUIRE_JS=1 to make this a failure)")
    if not (ROOT / "node_modules" / "jsdom").is_dir():
        pytest.fail("The JS test packages are missing: run `npm ci` in the repository root "
                    "(`bash dev/run test` does).")  # fmt: skip
    result = subprocess.run(
        [node, "--test", "tests/js/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"node --test tests/js/ failed:\n{result.stdout}\n{result.stderr}"
    )
