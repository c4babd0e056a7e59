"""Presets (lora_trainer/presets.py): the store, kohya_ss GUI JSON and kohya TOML in, kohya TOML out."""

from __future__ import annotations

import json

import pytest

from lora_trainer.config import config_from_dict, config_to_dict
from lora_trainer.errors import ConfigError
from lora_trainer.presets import (
    BUILTIN_PRESETS,
    Preset,
    PresetStore,
    export_kohya_toml,
    import_kohya_gui_json,
    import_kohya_toml,
    preset_from_json,
    shareable,
)

# a kohya_ss GUI LoRA configuration as the GUI saves it (values as the GUI writes them:
# numbers as strings, 0 and "" for "off")
GUI_CONFIG = {
    "LoRA_type": "Kohya LoCon",
    "adaptive_noise_scale": 0.00375,
    "additional_parameters": "--min_timestep 100 --scale_v_pred_loss_like_noise_pred",
    "bucket_no_upscale": True,
    "cache_latents": True,
    "caption_extension": ".txt",
    "clip_skip": "1",
    "conv_alpha": 4,
    "conv_dim": 8,
    "enable_bucket": True,
    "epoch": 12,
    "gradient_checkpointing": True,
    "keep_tokens": "0",
    "learning_rate": 0.0001,
    "lr_scheduler": "cosine",
    "lr_scheduler_num_cycles": "",
    "lr_warmup": 5,
    "max_resolution": "1024,1024",
    "max_train_epochs": "",
    "max_train_steps": "",
    "mixed_precision": "bf16",
    "module_dropout": 0.1,
    "multires_noise_iterations": 6,
    "network_alpha": 16,
    "network_dim": 32,
    "noise_offset": 0.0357,
    "noise_offset_type": "Original",
    "num_cpu_threads_per_process": 2,
    "optimizer": "AdamW8bit",
    "output_name": "gui_lora",
    "pretrained_model_name_or_path": "/models/sd_xl_base_1.0.safetensors",
    "sample_every_n_epochs": 0,
    "sample_prompts": "a photo of sks dog --w 1024 --h 1024",
    "save_every_n_epochs": 2,
    "save_precision": "fp16",
    "sdxl": True,
    "seed": "1234",
    "stop_text_encoder_training": 0,
    "text_encoder_lr": 5e-05,
    "train_batch_size": 2,
    "unet_lr": 0.0001,
    "xformers": "xformers",
    "weird_future_field": "on",
}


def test_kohya_gui_json_maps_to_kohya_options():
    result = import_kohya_gui_json(GUI_CONFIG)
    o = result.options
    assert o["max_train_epochs"] == 12 and "max_train_steps" not in o  # the GUI's "Epoch"
    assert o["resolution"] == "1024,1024" and o["optimizer_type"] == "AdamW8bit"
    assert o["lr_warmup_steps"] == pytest.approx(0.05)  # 5 % of the steps
    assert (o["conv_dim"], o["conv_alpha"]) == (8, 4.0)  # Kohya LoCon keeps its conv rank
    assert o["network_args"] == ["module_dropout=0.1"]
    assert o["seed"] == 1234 and o["clip_skip"] == 1 and o["keep_tokens"] == 0
    assert o["noise_offset"] == pytest.approx(0.0357) and "multires_noise_iterations" not in o
    assert o["min_timestep"] == 100 and o["scale_v_pred_loss_like_noise_pred"] is True
    assert "sample_every_n_epochs" not in o and "sdxl" not in o and "xformers" not in o
    assert result.extras["sample_prompt"] == "a photo of sks dog --w 1024 --h 1024"
    assert any("weird_future_field" in n for n in result.notes)
    assert any("loaded in the WebUI" in n for n in result.notes)


def test_kohya_gui_json_special_cases():
    standard = import_kohya_gui_json({**GUI_CONFIG, "LoRA_type": "Standard"}).options
    assert "conv_dim" not in standard  # the GUI ignores conv settings for Standard LoRA
    te_only = import_kohya_gui_json({"unet_lr": 0, "text_encoder_lr": 1e-5}).options
    assert te_only == {"text_encoder_lr": 1e-5, "network_train_text_encoder_only": True}
    multires = import_kohya_gui_json({"noise_offset_type": "Multires", "noise_offset": 0.1,
                                      "multires_noise_iterations": 8}).options  # fmt: skip
    assert multires == {"multires_noise_iterations": 8}
    for lycoris in ("LyCORIS/LoHa", "LoCon"):
        with pytest.raises(ConfigError, match="is not supported"):
            import_kohya_gui_json({"LoRA_type": lycoris})
    with pytest.raises(ConfigError, match="network_dim"):
        import_kohya_gui_json({"network_dim": "lots"})


def test_kohya_toml_round_trip(tmp_path):
    options = {
        "network_dim": 16, "network_alpha": 8.0, "learning_rate": 2e-4, "resolution": "768,512",
        "train_data_dir": 'C:\\data\\img "quoted" é', "optimizer_args": ["weight_decay=0.1", "betas=(0.9, 0.99)"],
        "conv_dim": 4, "conv_alpha": 1.0, "device": "cuda", "overwrite": True, "seed": None,
        "max_train_epochs": 3, "gradient_checkpointing": True,
    }  # fmt: skip
    text = export_kohya_toml(options, ["comment line"])
    assert text.startswith("# comment line\n")
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    back = import_kohya_toml(path).options
    assert back["train_data_dir"] == options["train_data_dir"]
    assert back["optimizer_args"] == options["optimizer_args"]
    assert back["network_args"] == ["conv_dim=4", "conv_alpha=1.0"]  # kohya takes LoCon ranks here
    assert (
        "device" not in back
        and "overwrite" not in back
        and "seed" not in back
        and "conv_dim" not in back
    )
    assert {k: back[k] for k in ("network_dim", "network_alpha", "learning_rate", "resolution")} == {
        "network_dim": 16, "network_alpha": 8.0, "learning_rate": 2e-4, "resolution": "768,512"
    }  # fmt: skip


def test_full_config_exports_to_a_toml_kohya_and_we_read_back(tmp_path):
    config = config_from_dict({"output_name": "x", "network_dim": 8, "max_train_epochs": 2})
    text = export_kohya_toml(config_to_dict(config))
    path = tmp_path / "all.toml"
    path.write_text(text, encoding="utf-8")
    back = import_kohya_toml(path).options
    again = config_from_dict(back)
    for name, value in config_to_dict(config).items():
        if name not in ("device", "overwrite", "skip_bad_images", "allow_symlinks", "sdxl"):
            assert getattr(again, name) == value, name


def test_preset_store(tmp_path):
    store = PresetStore(tmp_path / "presets")
    assert store.names()[: len(BUILTIN_PRESETS)] == list(BUILTIN_PRESETS)
    preset = Preset("my style", shareable({"network_dim": 8, "train_data_dir": "/x", "output_name": "y"}),
                    {"sample_prompt": "sks"})  # fmt: skip
    assert preset.options == {"network_dim": 8}  # run-specific options are not kept
    path = store.save(preset)
    assert json.loads(path.read_text())["format"] == "lora-trainer-preset"
    assert store.load("my style").options == {"network_dim": 8} and "my style" in store.names()
    with pytest.raises(ConfigError, match="exists"):
        store.save(preset)
    with pytest.raises(ConfigError, match="built-in"):
        store.save(Preset("Low VRAM", {}))
    with pytest.raises(ConfigError, match="not a plain name"):
        store.save(Preset("../escape", {}))
    store.delete("my style")
    with pytest.raises(ConfigError, match="no preset named"):
        store.load("my style")
    assert store.load("Low VRAM").options["cache_latents"] is True
    for name in BUILTIN_PRESETS:  # every built-in preset is valid
        config_from_dict({**store.load(name).options, "output_name": "x"})


def test_preset_json_is_checked():
    with pytest.raises(ConfigError, match="not a LoRA Trainer preset"):
        preset_from_json({"network_dim": 4}, "x.json")
    with pytest.raises(ConfigError, match="unknown option 'netdim'"):
        preset_from_json(
            {"format": "lora-trainer-preset", "version": 1, "options": {"netdim": 4}}, "x.json"
        )
