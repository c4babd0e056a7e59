"""The command line: training from flags and config files, inspect, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_trainer.cli import main
from lora_trainer.config import BUILTIN_TINY_MODEL, NOT_YET_SUPPORTED
from lora_trainer.demo import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def dataset(tmp_path) -> Path:
    return make_demo_dataset(tmp_path / "data", count=2)


def _train_args(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        f"--pretrained_model_name_or_path={BUILTIN_TINY_MODEL}",
        f"--train_data_dir={dataset}",
        f"--output_dir={out}",
        "--output_name=cli",
        "--caption_extension=.txt",
        "--resolution=64",
        "--max_train_steps=2",
        "--device=cpu",
        *extra,
    ]


def _fails_cleanly(capsys, args: list[str], expected: str, out: Path | None = None) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and expected in lines[-1], err
    assert "Traceback" not in err
    if out is not None:
        assert not out.exists() or not list(out.iterdir())
    return lines[-1]


def test_train_from_flags_then_inspect(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_train_args(dataset, out, "--network_dim=2", "--seed=3")) == 0
    assert (out / "cli.safetensors").is_file()
    capsys.readouterr()
    assert main(["inspect", str(out / "cli.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "Rank / alpha: 2 / 1" in text
    assert "sks toy" in text


def test_train_from_toml_with_flag_override(dataset, tmp_path):
    out = tmp_path / "out"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        "[model_arguments]\n"
        f'pretrained_model_name_or_path = "{BUILTIN_TINY_MODEL}"\n'
        "[dataset_arguments]\n"
        f'train_data_dir = "{dataset.as_posix()}"\ncaption_extension = ".txt"\nresolution = "64"\n'
        "[training_arguments]\n"
        f'output_dir = "{out.as_posix()}"\noutput_name = "toml"\nmax_train_steps = 5\n'
        'device = "cpu"\nnetwork_dim = 2\n',
        encoding="utf-8",
    )
    assert main(["train", "--config", str(cfg), "--max_train_steps=1"]) == 0
    from lora_trainer.lora.kohya_file import load_kohya_lora

    meta = load_kohya_lora(out / "toml.safetensors").metadata
    assert meta["ss_steps"] == "1" and meta["ss_network_dim"] == "2"


def test_json_config(dataset, tmp_path):
    out = tmp_path / "out"
    cfg = tmp_path / "cfg.json"
    values = json.loads(json.dumps({"output_name": "j", "max_train_steps": 1, "network_dim": 2}))
    cfg.write_text(json.dumps(values), encoding="utf-8")
    args = [
        a for a in _train_args(dataset, out) if not a.startswith(("--output_name", "--max_train"))
    ]
    assert main([*args, "--config", str(cfg)]) == 0
    assert (out / "j.safetensors").is_file()


def test_missing_folder(tmp_path, capsys):
    _fails_cleanly(
        capsys, _train_args(tmp_path / "nope", tmp_path / "out"), "nope", tmp_path / "out"
    )


def test_folder_without_kohya_subfolders(tmp_path, capsys):
    data = tmp_path / "flat"
    data.mkdir()
    (data / "a.png").write_bytes((ROOT / "tests" / "conftest.py").read_bytes()[:0])
    line = _fails_cleanly(capsys, _train_args(data, tmp_path / "out"), "flat", tmp_path / "out")
    assert "_" in line  # names the N_token layout kohya expects


def test_empty_subfolders(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "10_sks dog").mkdir(parents=True)
    _fails_cleanly(capsys, _train_args(data, tmp_path / "out"), "10_sks dog", tmp_path / "out")


def test_corrupt_image(dataset, tmp_path, capsys):
    bad = next(dataset.glob("*/*.png"))
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    _fails_cleanly(capsys, _train_args(dataset, tmp_path / "out"), bad.name, tmp_path / "out")


def test_non_utf8_caption(dataset, tmp_path, capsys):
    caption = next(dataset.glob("*/*.txt"))
    caption.write_bytes("sks toy, caf\xe9".encode("latin-1"))
    _fails_cleanly(capsys, _train_args(dataset, tmp_path / "out"), caption.name, tmp_path / "out")


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "a\\b"])
def test_output_name_with_path_parts(dataset, tmp_path, capsys, name):
    args = [*_train_args(dataset, tmp_path / "out"), f"--output_name={name}"]
    _fails_cleanly(capsys, args, "output_name", tmp_path / "out")


def test_existing_output_needs_overwrite(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "cli.safetensors"
    existing.write_bytes(b"mine")
    _fails_cleanly(capsys, _train_args(dataset, out), "--overwrite")
    assert existing.read_bytes() == b"mine"
    assert main([*_train_args(dataset, out), "--overwrite"]) == 0
    assert existing.read_bytes() != b"mine"


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--network_dim=0", "network_dim"),
        ("--network_dim=-4", "network_dim"),
        ("--learning_rate=0", "learning_rate"),
        ("--learning_rate=-1e-4", "learning_rate"),
        ("--network_dim=four", "network_dim"),
        ("--resolution=abc", "resolution"),
    ],
)
def test_bad_values(dataset, tmp_path, capsys, flag, expected):
    _fails_cleanly(
        capsys, [*_train_args(dataset, tmp_path / "out"), flag], expected, tmp_path / "out"
    )


def test_unknown_option_suggests_the_nearest(dataset, tmp_path, capsys):
    line = _fails_cleanly(
        capsys, [*_train_args(dataset, tmp_path / "out"), "--netwrok_dim=4"], "netwrok_dim"
    )
    assert "network_dim" in line
    cfg = tmp_path / "c.toml"
    cfg.write_text("learnig_rate = 1e-4\n", encoding="utf-8")
    line = _fails_cleanly(capsys, ["train", "--config", str(cfg)], "learnig_rate")
    assert "learning_rate" in line


def test_not_yet_supported_kohya_option_says_so(tmp_path, capsys):
    if not NOT_YET_SUPPORTED:
        pytest.skip("every kohya option is supported")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"{sorted(NOT_YET_SUPPORTED)[0]} = 5\n", encoding="utf-8")
    _fails_cleanly(capsys, ["train", "--config", str(cfg)], "does not support yet")


def test_inspect_missing_file(tmp_path, capsys):
    _fails_cleanly(capsys, ["inspect", str(tmp_path / "none.safetensors")], "none.safetensors")


def test_real_process_exit_code_and_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "lora_trainer", "train", f"--train_data_dir={tmp_path / 'missing'}",
         f"--output_dir={tmp_path}", f"--pretrained_model_name_or_path={BUILTIN_TINY_MODEL}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
