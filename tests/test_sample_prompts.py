"""kohya's sample-prompt files: every fixture line parses to kohya's exact dict."""

from __future__ import annotations

import json

import pytest

from lora_trainer.errors import ConfigError
from lora_trainer.train.sample_prompts import (
    line_to_prompt_dict,
    load_prompt_dicts,
    load_sample_prompts,
)
from lora_trainer.train.samplers import SAMPLERS, build_scheduler, canonical_sampler


def _lines(fixtures) -> dict:
    return json.loads((fixtures / "kohya_sample_prompts.json").read_text(encoding="utf-8"))


def test_every_fixture_line_parses_like_kohya(fixtures):
    expected = _lines(fixtures)
    assert len(expected) == 15
    for line, want in expected.items():
        assert line_to_prompt_dict(line) == want, line


def test_prompt_file_loads_like_kohya(fixtures, tmp_path):
    oracle = json.loads((fixtures / "kohya_sample_prompts_load_prompts.json").read_text())
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(oracle["input_lines"]) + "\n", encoding="utf-8")
    assert load_prompt_dicts(path) == oracle["load_prompts_result"]


def test_windows_line_endings_and_indented_hash(tmp_path):
    path = tmp_path / "p.txt"
    # kohya drops a line only when its very first character is '#'
    path.write_bytes(b"a --w 64\r\n# gone\r\n  # kept --s 3\r\n")
    assert load_prompt_dicts(path) == [
        {"prompt": "a", "width": 64, "enum": 0},
        {"prompt": "# kept", "sample_steps": 3, "enum": 1},
    ]


def test_toml_and_json_prompt_files(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text(
        '[prompt]\nwidth = 64\nheight = 64\nsample_steps = 4\n'
        '[[prompt.subset]]\nprompt = "a cat"\nseed = 1\n'
        '[[prompt.subset]]\nprompt = "a dog"\nwidth = 128\n',
        encoding="utf-8",
    )  # fmt: skip
    prompts = load_sample_prompts(toml, "ddim")
    assert [(p.prompt, p.width, p.height, p.steps, p.seed) for p in prompts] == [
        ("a cat", 64, 64, 4, 1),
        ("a dog", 128, 64, 4, None),
    ]
    js = tmp_path / "p.json"
    js.write_text(json.dumps(["a --w 96 --ss euler_a", {"prompt": "b", "scale": 3}]))
    a, b = load_sample_prompts(js, "ddim")
    assert (a.prompt, a.width, a.sampler, a.index) == ("a", 96, "euler_a", 0)
    assert (b.prompt, b.scale, b.sampler, b.index) == ("b", 3.0, "ddim", 1)


def test_kohya_defaults_and_size_rounding(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("plain\nodd --w 513 --h 70\ntiny --w 10 --h 8 --n ugly --d 5 --l 4\n")
    plain, odd, tiny = load_sample_prompts(path, "euler")
    assert (plain.width, plain.height, plain.steps, plain.scale) == (512, 512, 30, 7.5)
    assert (plain.seed, plain.negative_prompt, plain.sampler) == (None, None, "euler")
    assert (odd.width, odd.height) == (512, 64)  # down to a multiple of 8, at least 64
    assert (tiny.width, tiny.height, tiny.negative_prompt, tiny.seed, tiny.scale) == (
        64, 64, "ugly", 5, 4.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("p.txt", None, "does not exist"),
        ("p.yaml", "a", "must be a .txt, .toml or .json file"),
        ("p.json", "{not json", "cannot parse"),
        ("p.json", '{"prompt": "a"}', "must hold a list"),
        ("p.toml", 'prompt = "a"', "[prompt] table"),
        ("p.json", '[{"prompt": "a", "width": "wide"}]', "width must be a number"),
    ],
)
def test_bad_prompt_files_are_clear_errors(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=None) as info:
        load_sample_prompts(path, "ddim")
    assert expected in info.value.message
    assert str(path) in info.value.message


def test_sampler_names_kohya_and_webui():
    kohya = [
        "ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpm_2", "dpm_2_a", "dpmsolver",
        "dpmsolver++", "dpmsingle", "k_lms", "k_euler", "k_euler_a", "k_dpm_2", "k_dpm_2_a",
    ]  # fmt: skip
    for name in kohya:
        assert canonical_sampler(name) in SAMPLERS
    assert canonical_sampler("Euler a") == "euler_a"
    assert canonical_sampler("DPM++ 2M Karras") == "dpm++_2m_karras"
    assert canonical_sampler(" DDIM ") == "ddim"
    with pytest.raises(ConfigError, match="sampler 'euler_b' is not known"):
        canonical_sampler("euler_b")


def test_schedulers_follow_the_model(fixtures):
    from lora_trainer.models.assets import sd15_scheduler_config

    config = sd15_scheduler_config()
    karras = build_scheduler("DPM++ 2M Karras", config, "v_prediction")
    assert type(karras).__name__ == "DPMSolverMultistepScheduler"
    assert karras.config.use_karras_sigmas and karras.config.algorithm_type == "dpmsolver++"
    assert karras.config.prediction_type == "v_prediction"
    assert karras.config.beta_schedule == "scaled_linear" and karras.config.beta_end == 0.012
    assert (
        build_scheduler("k_dpm_2_a", config).__class__.__name__ == "KDPM2AncestralDiscreteScheduler"
    )
    zsnr = build_scheduler("euler", config, "v_prediction", zero_terminal_snr=True)
    assert zsnr.config.rescale_betas_zero_snr and zsnr.config.timestep_spacing == "trailing"
