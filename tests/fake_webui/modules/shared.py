"""Fake of modules/shared.py (A1111 v1.10.1): the globals the extension reads.

Real: `cmd_opts` is the parsed argparse Namespace (the built-in Lora extension's
preload.py adds `--lora-dir`, default models/Lora); `sd_model` is the loaded model, whose
`sd_checkpoint_info` (modules/sd_models.py CheckpointInfo) has `filename`, `name`,
`shorthash`, `sha256`.
"""

from __future__ import annotations

import argparse
from typing import Any

cmd_opts = argparse.Namespace(lora_dir="models/Lora", api=False, lowvram=False, medvram=False)
# modules/cmd_args.py flags the Train LoRA tab reads, with the fixture run's values
# (shared/fixtures/A1111.md: --use-cpu all --no-half --precision full --api)
cmd_opts.medvram_sdxl = False
cmd_opts.ckpt_dir = None
cmd_opts.api_auth = None  # "user:password[,user2:password2]"
cmd_opts.nowebui = False
cmd_opts.device_id = None
cmd_opts.no_half = True
cmd_opts.no_half_vae = False
cmd_opts.precision = "full"
cmd_opts.use_cpu = ["all"]
cmd_opts.lyco_dir_backcompat = "models/LyCORIS"  # the Lora extension's preload.py
sd_model: Any = None


# --- Train LoRA tab: shared.state, settings, walk_files and the sd_model property ---
# Real: shared_init.initialize() sets `state = shared_state.State()` and
# `opts = options.Options(options_templates, restricted_opts)` (templates from
# shared_options.py, extended by extensions' on_ui_settings via opts.add_option);
# `walk_files = util.walk_files`; and the module's class is swapped for `Shared`, whose
# `sd_model` property reads/writes `sd_models.model_data`.
import os as _os  # noqa: E402
import sys as _sys  # noqa: E402

from modules import options as _options  # noqa: E402
from modules import shared_state as _shared_state  # noqa: E402

OptionInfo = _options.OptionInfo
options_section = _options.options_section
state = _shared_state.State()
options_templates: dict = {
    # shared_options.py values the extension and the fake Lora extension read
    "samples_format": OptionInfo("png", "File format for images"),
    "list_hidden_files": OptionInfo(True, "Load models/files in hidden directories"),
    "live_previews_enable": OptionInfo(True, "Show live previews of the created image"),
    "show_progress_every_n_steps": OptionInfo(10, "Live preview display period"),
    "persistent_cond_cache": OptionInfo(True, "Persistent cond cache"),
    # read by processing.StableDiffusionProcessing.cached_params (the cond cache's key)
    "use_old_scheduling": OptionInfo(False, "Use old prompt editing timelines."),
    "emphasis": OptionInfo("Original", "Emphasis mode"),
    "sdxl_crop_top": OptionInfo(0, "crop top coordinate"),
    "sdxl_crop_left": OptionInfo(0, "crop left coordinate"),
    "fp8_storage": OptionInfo("Disable", "FP8 weight"),
    "cache_fp16_weight": OptionInfo(False, "Cache FP16 weight for LoRA"),
    "extra_networks_default_multiplier": OptionInfo(1.0, "Default weight for extra networks"),
    # extensions-builtin/Lora/scripts/lora_script.py
    "lora_functional": OptionInfo(False, "Lora/Networks: use old method"),
    "lora_in_memory_limit": OptionInfo(0, "Number of Lora networks to keep cached in memory"),
}
opts = _options.Options(options_templates, set())


def walk_files(path, allowed_extensions=None):
    """modules/util.py walk_files: every file below `path` (os.walk, links followed), sorted."""
    if not _os.path.exists(path):
        return
    if allowed_extensions is not None:
        allowed_extensions = set(allowed_extensions)
    items = sorted(_os.walk(path, followlinks=True), key=lambda x: x[0].lower())
    for root, _, files in items:
        for filename in sorted(files, key=str.lower):
            if allowed_extensions is not None:
                _, ext = _os.path.splitext(filename)
                if ext.lower() not in allowed_extensions:
                    continue
            if not opts.list_hidden_files and ("/." in root or "\\." in root):
                continue
            yield _os.path.join(root, filename)


class Shared(_sys.modules[__name__].__class__):
    """modules/shared_items.py Shared: `sd_model` is a property over sd_models.model_data."""

    @property
    def sd_model(self):
        import modules.sd_models

        return modules.sd_models.model_data.get_sd_model()

    @sd_model.setter
    def sd_model(self, value):
        import modules.sd_models

        modules.sd_models.model_data.set_sd_model(value)


del sd_model  # the property above takes over the name
_sys.modules[__name__].__class__ = Shared


# --- LoRA comparison grid: what processing, images, sd_samplers, the X/Y/Z plot and the grid
# read. Real: shared_options.py options_templates defaults (and lora_script.py for the Lora
# settings); `total_tqdm = shared_total_tqdm.TotalTQDM()` set by shared_init.initialize().
from modules import shared_total_tqdm as _shared_total_tqdm  # noqa: E402

total_tqdm = _shared_total_tqdm.TotalTQDM()
for _key, _default in {
    "samples_save": True,
    "grid_save": True,
    "grid_format": "png",
    "grid_extended_filename": False,
    "grid_only_if_multiple": True,
    "grid_prevent_empty_spots": False,
    "n_rows": -1,
    "font": "",
    "grid_text_active_color": "#000000",
    "grid_text_inactive_color": "#999999",
    "grid_background_color": "#ffffff",
    "save_images_add_number": True,
    "save_images_replace_action": "Replace",
    "samples_filename_pattern": "",
    "directories_filename_pattern": "[date]",
    "save_to_dirs": True,
    "grid_save_to_dirs": True,
    "save_txt": False,
    "jpeg_quality": 80,
    "img_max_size_mp": 200,
    "save_incomplete_images": False,
    "enable_pnginfo": True,
    "return_grid": True,
    "outdir_samples": "",
    "outdir_txt2img_samples": "outputs/txt2img-images",
    "outdir_img2img_samples": "outputs/img2img-images",
    "outdir_grids": "",
    "outdir_txt2img_grids": "outputs/txt2img-grids",
    "outdir_img2img_grids": "outputs/img2img-grids",
    "face_restoration": False,
    "face_restoration_model": "CodeFormer",
    "tiling": False,
    "CLIP_stop_at_last_layers": 1,
    "randn_source": "GPU",
    "token_merging_ratio": 0.0,
    "token_merging_ratio_hr": 0.0,
    "s_min_uncond": 0.0,
    "s_churn": 0.0,
    "s_tmin": 0.0,
    "s_tmax": 0.0,
    "s_noise": 1.0,
    "initial_noise_multiplier": 1.0,
    "add_model_hash_to_info": True,
    "add_model_name_to_info": True,
    "add_vae_hash_to_info": True,
    "add_vae_name_to_info": True,
    "add_user_name_to_info": False,
    "add_version_to_infotext": True,
    "hide_samplers": [],
    "sd_lora": "None",
    "lora_preferred_name": "Alias from file",
    "lora_add_hashes_to_infotext": True,
}.items():
    if _key not in options_templates:
        opts.add_option(_key, OptionInfo(_default, _key))
