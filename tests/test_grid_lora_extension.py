"""The fake Lora extension resolves `<lora:name>` as A1111 v1.10.1's networks.load_networks does.

The grid relies on that rule: epoch files keep their LoRA's ss_output_name, so the alias
is shared and must only work as a file name.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent / "fake_webui"))

from harness import fresh_webui, live_tiny_model


@pytest.fixture()
def env(monkeypatch, tmp_path, fixtures):
    env = fresh_webui(monkeypatch, tmp_path)
    env.shared.sd_model = live_tiny_model()
    env.lora_source = fixtures / "tiny-sd1-lora.safetensors"
    return env


def _add(env, relative: str, alias: str | None = None, *, hashed: bool = True) -> Path:
    """The tiny fixture LoRA saved as `relative`, with ss_output_name `alias`."""
    source = env.lora_source
    with safe_open(source, "pt") as f:
        metadata = dict(f.metadata() or {})
    path = env.lora_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata["ss_output_name"] = alias or path.stem
    metadata.pop("sshs_model_hash", None)
    if hashed:
        metadata["sshs_model_hash"] = hashlib.sha256(relative.encode()).hexdigest()
    save_file(load_file(source), str(path), metadata=metadata)
    return path


def _loaded(env, *names: str, **multipliers) -> list[Path]:
    env.networks.load_networks(list(names), **multipliers)
    return [Path(n.network_on_disk.filename) for n in env.networks.loaded_networks]


def test_a_shared_alias_only_works_as_a_file_name(env):
    final = _add(env, "mine.safetensors")
    epoch = _add(env, "mine_epochs/mine-000001.safetensors", alias="mine")
    other = _add(env, "other.safetensors", alias="fancy")
    env.networks.list_available_networks()
    assert "mine" in env.networks.forbidden_network_aliases
    assert _loaded(env, "mine") == [final]  # never the epoch file that shares the alias
    assert _loaded(env, "mine-000001") == [epoch]
    assert _loaded(env, "fancy", "other") == [other, other]  # a unique alias works too
    assert env.networks.not_found_messages == []


def test_forbidden_names_and_missing_files(env):
    blank = _add(env, "blank.safetensors", alias="None")  # "none" is always forbidden
    env.networks.list_available_networks()
    assert _loaded(env, "None", "missing") == []
    assert env.networks.not_found_messages == ["Lora not found: None, missing"]
    assert _loaded(env, "blank") == [blank]
    late = _add(env, "sub/late.safetensors")  # added after the list was made
    assert _loaded(env, "late") == [late]  # rescanned by name on first use


def test_loaded_networks_are_reused_and_the_cache_is_trimmed(env):
    _add(env, "mine.safetensors")
    _add(env, "other.safetensors")
    env.networks.list_available_networks()
    env.networks.load_networks(["mine"], te_multipliers=[0.5], unet_multipliers=[1.0])
    first = env.networks.loaded_networks[0]
    assert (first.te_multiplier, first.unet_multiplier, first.mentioned_name) == (0.5, 1.0, "mine")
    assert env.networks.networks_in_memory == {}  # lora_in_memory_limit 0: nothing kept
    env.networks.load_networks(["mine"], te_multipliers=[1.0], unet_multipliers=[0.25])
    again = env.networks.loaded_networks[0]
    assert again is first and (again.te_multiplier, again.unet_multiplier) == (1.0, 0.25)
    env.shared.opts.lora_in_memory_limit = 1
    env.networks.load_networks(["other"])
    env.networks.load_networks(["mine"])
    assert list(env.networks.networks_in_memory) == ["mine"]


def test_a_file_without_a_stored_hash_gets_the_addnet_hash(env):
    path = _add(env, "nohash.safetensors", hashed=False)
    env.networks.list_available_networks()
    on_disk = env.networks.available_networks["nohash"]
    assert on_disk.hash == "" and on_disk.shorthash == ""
    env.networks.load_networks(["nohash"])
    data = path.read_bytes()
    tensors = data[8 + int.from_bytes(data[:8], "little") :]  # after the length and header
    assert on_disk.hash == hashlib.sha256(tensors).hexdigest()
    assert env.networks.available_network_hash_lookup[on_disk.shorthash] is on_disk
