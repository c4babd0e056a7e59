"""Shared test helpers: where the upstream fixtures live, and small builders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# nothing in the tests may reach a model hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The models in tests are tiny: one thread is faster than two fighting over small ops,
# and CPU results do not depend on the machine's core count.
torch.set_num_threads(1)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(
            f"fixtures not found at {FIXTURES}: the shared/ folder must sit beside the checkout"
        )
    return FIXTURES


def _diffusers_peft_backend() -> bool:
    # diffusers' kohya loader runs on its PEFT backend, which needs transformers >= 4.34
    from diffusers.utils import USE_PEFT_BACKEND

    return bool(USE_PEFT_BACKEND)


def pytest_collection_modifyitems(config, items):
    interop = [item for item in items if "interop" in item.keywords]
    if interop and not _diffusers_peft_backend():
        if os.environ.get("LORA_TRAINER_REQUIRE_INTEROP"):
            raise pytest.UsageError(
                "the interop profile lacks diffusers' PEFT backend (transformers >= 4.34)"
            )
        skip = pytest.mark.skip(reason="needs Forge's pins: run `bash dev/run test-forge`")
        for item in interop:
            item.add_marker(skip)
