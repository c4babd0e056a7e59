"""Human-readable summary of a kohya LoRA file, for `python -m lora_trainer inspect FILE`."""

from __future__ import annotations

import datetime
import json
import re
from collections import Counter

import torch

from .hashes import precalculate_hashes
from .kohya_file import KohyaLora, module_prefix

VERSION_NAMES = {
    "sd_v1": "SD 1.x",
    "sd_v1_v": "SD 1.x (v-prediction)",
    "sd_v2": "SD 2.x (512, epsilon)",
    "sd_v2_v": "SD 2.x (768-v, v-prediction)",
    "sdxl_base_v1-0": "SDXL",
}
ARCH_NAMES = {
    "stable-diffusion-v1": "SD 1.x",
    "stable-diffusion-v2-512": "SD 2.x (512, epsilon)",
    "stable-diffusion-v2-768-v": "SD 2.x (768-v, v-prediction)",
    "stable-diffusion-xl-v1-base": "SDXL",
}
# Width of the text-encoder / cross-attention input that each base model family uses.
WIDTH_NAMES = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
PART_NAMES = {"lora_unet": "UNet", "lora_te": "text encoder", "lora_te1": "text encoder 1 (CLIP-L)"}
PART_NAMES["lora_te2"] = "text encoder 2 (OpenCLIP bigG)"
DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
TOP_TAGS = 8


def describe_lora(lora: KohyaLora) -> list[str]:
    """Lines describing what the LoRA is, how it was trained and whether its hash verifies."""
    md = lora.metadata
    lines = []
    if lora.path is not None:
        size = lora.path.stat().st_size if lora.path.exists() else 0
        shown = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
        lines.append(f"File: {lora.path.name} ({shown})")
    title = md.get("modelspec.title") or md.get("ss_output_name")
    if title:
        lines.append(f"Title: {title}")
    lines.append(f"Architecture: {guess_architecture(lora)}")
    lines += _network_lines(lora)
    lines.append(
        "Precision: " + ", ".join(sorted(DTYPE_NAMES.get(d, str(d)) for d in lora.dtypes()))
    )
    if not md:
        lines.append("Metadata: none (no training settings or trigger words recorded)")
    else:
        if trigger_words(md):
            lines.append("Trigger words (folder class tokens): " + ", ".join(trigger_words(md)))
        if top_tags(md):
            lines.append("Top caption tags: " + ", ".join(f"{t} ({c})" for t, c in top_tags(md)))
        lines += _training_lines(md)
    lines.append("Hash: " + _hash_status(lora))
    return lines


def guess_architecture(lora: KohyaLora) -> str:
    """Base model family from the metadata, else from key prefixes and layer widths."""
    version = lora.metadata.get("ss_base_model_version")
    if version in VERSION_NAMES:
        return f"{VERSION_NAMES[version]} (from metadata)"
    arch = lora.metadata.get("modelspec.architecture", "").split("/")[0]
    if arch in ARCH_NAMES:
        return f"{ARCH_NAMES[arch]} (from metadata)"
    modules = lora.module_names()
    if {"lora_te1", "lora_te2"} & set(lora.text_encoder_prefixes()) or any(
        m.startswith(("lora_unet_input_blocks", "lora_unet_output_blocks")) for m in modules
    ):
        return "SDXL (guessed from key names)"
    # The input width of text-encoder q_proj or of cross-attention to_k tells the family.
    for suffix in ("self_attn_q_proj", "attn2_to_k"):
        widths = {int(lora.down(m).shape[1]) for m in modules if m.endswith(suffix)}
        for width in sorted(widths):
            name = WIDTH_NAMES.get(width)
            return (
                f"{name} (guessed from layer width {width})"
                if name
                else f"unknown (layer width {width})"
            )
    return "unknown (no text-encoder or cross-attention modules to tell from)"


def _network_lines(lora: KohyaLora) -> list[str]:
    modules = lora.module_names()
    conv3 = [m for m in modules if (lora.kernel_size(m) or (1, 1)) != (1, 1)]
    kind = f"LoCon (LoRA with {len(conv3)} 3x3 conv modules)" if conv3 else "LoRA"
    network_module = lora.metadata.get("ss_network_module")
    lines = [f"Network: {kind}" + (f", {network_module}" if network_module else "")]
    plain = [m for m in modules if m not in conv3]
    lines.append("Rank / alpha: " + _rank_alpha(lora, plain))
    if conv3:
        lines.append("Conv rank / alpha: " + _rank_alpha(lora, conv3))
    counts = Counter(module_prefix(m) for m in modules)
    parts = ", ".join(
        f"{PART_NAMES.get(p, p)} {n}"
        for p, n in sorted(counts.items(), key=lambda i: (i[0] != "lora_unet", i[0]))
    )
    lines.append(f"Modules: {len(modules)} ({parts})")
    return lines


def _rank_alpha(lora: KohyaLora, modules: list[str]) -> str:
    if not modules:
        return "none"
    ranks = sorted({lora.rank(m) for m in modules})
    alphas = sorted({lora.alpha(m) for m in modules})
    rank_text = str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}-{ranks[-1]} (varies per module)"
    alpha_text = f"{alphas[0]:g}" if len(alphas) == 1 else f"{alphas[0]:g}-{alphas[-1]:g}"
    if len(ranks) == 1 and len(alphas) == 1:
        return f"{rank_text} / {alpha_text} (scale {alphas[0] / ranks[0]:g})"
    return f"{rank_text} / {alpha_text}"


def _json(md: dict[str, str], key: str) -> object:
    try:
        return json.loads(md.get(key) or "null")
    except json.JSONDecodeError:
        return None


def trigger_words(md: dict[str, str]) -> list[str]:
    """Class tokens of the (non-regularization) training folders: the words to prompt with."""
    words: list[str] = []
    dirs = _json(md, "ss_dataset_dirs")
    for name in dirs if isinstance(dirs, dict) else []:
        # kohya's folder rule: "<repeats>_<class tokens>", split at the first underscore.
        repeats, _, tokens = name.partition("_")
        if repeats.strip().isdigit() and tokens.strip():
            words.append(tokens.strip())
    datasets = _json(md, "ss_datasets")  # dataset_config mode records class tokens per subset
    for dataset in datasets if isinstance(datasets, list) else []:
        for subset in dataset.get("subsets", []) if isinstance(dataset, dict) else []:
            if isinstance(subset, dict) and subset.get("class_tokens") and not subset.get("is_reg"):
                words.append(subset["class_tokens"])
    return list(dict.fromkeys(words))


def top_tags(md: dict[str, str], n: int = TOP_TAGS) -> list[tuple[str, int]]:
    """The most frequent caption tags over all folders of ss_tag_frequency."""
    freq = _json(md, "ss_tag_frequency")
    counts: Counter[str] = Counter()
    for tags in freq.values() if isinstance(freq, dict) else []:
        if isinstance(tags, dict):
            counts.update({t: c for t, c in tags.items() if isinstance(c, int)})
    return counts.most_common(n)


def _training_lines(md: dict[str, str]) -> list[str]:
    def get(key: str) -> str | None:
        value = md.get(key)
        return None if value in (None, "None", "") else value

    lines = []
    lrs = [
        f"{k} {get(f'ss_{k}')}"
        for k in ("learning_rate", "unet_lr", "text_encoder_lr")
        if get(f"ss_{k}")
    ]
    if lrs:
        lines.append("Learning rate: " + ", ".join(lrs))
    settings = []
    if get("ss_steps") or get("ss_max_train_steps"):
        settings.append(f"steps {get('ss_steps') or '?'} of {get('ss_max_train_steps') or '?'}")
    if get("ss_epoch") or get("ss_num_epochs"):
        settings.append(f"epoch {get('ss_epoch') or '?'} of {get('ss_num_epochs') or '?'}")
    reso = re.findall(r"\d+", get("ss_resolution") or "")
    if len(reso) == 2:
        settings.append(f"resolution {reso[0]}x{reso[1]}")
    elif get("modelspec.resolution"):
        settings.append(f"resolution {get('modelspec.resolution')}")
    for key, label in (
        ("ss_total_batch_size", "batch"),
        ("ss_num_train_images", "images x repeats"),
    ):
        if get(key):
            settings.append(f"{label} {get(key)}")
    if settings:
        lines.append("Training: " + ", ".join(settings))
    optimizer = get("ss_optimizer")
    if optimizer:
        name, _, args = optimizer.partition("(")
        optimizer = name.rsplit(".", 1)[-1] + (f" ({args.rstrip(')')})" if args else "")
    others = [f"optimizer {optimizer}"] if optimizer else []
    others += [
        f"{label} {get(k)}"
        for k, label in (
            ("ss_lr_scheduler", "scheduler"),
            ("ss_seed", "seed"),
            ("ss_mixed_precision", "mixed precision"),
        )
        if get(k)
    ]
    if others:
        lines.append("Settings: " + ", ".join(others))
    if get("ss_sd_model_name"):
        pairs = (("ss_sd_model_hash", "hash"), ("ss_new_sd_model_hash", "sha256"))
        hashes = [f"{label} {get(k)[:10]}" for k, label in pairs if get(k)]
        lines.append(
            f"Base model: {get('ss_sd_model_name')}" + (f" ({', '.join(hashes)})" if hashes else "")
        )
    started, finished = (
        _timestamp(get("ss_training_started_at")),
        _timestamp(get("ss_training_finished_at")),
    )
    if started is not None:
        when = datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        )
        took = f", took {finished - started:.0f} s" if finished is not None else ""
        lines.append(f"Trained: {when}{took}")
    if get("ss_training_comment"):
        lines.append(f"Comment: {get('ss_training_comment')}")
    return lines


def _timestamp(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _hash_status(lora: KohyaLora) -> str:
    recorded = lora.metadata.get("sshs_model_hash")
    if not recorded:
        return "no sshs_model_hash recorded (not saved by kohya's tools)"
    model_hash, legacy_hash = precalculate_hashes(lora.tensors, lora.metadata)
    if model_hash != recorded:
        return f"sshs_model_hash does NOT match (recorded {recorded[:10]}, actual {model_hash[:10]}): the weights changed after saving"
    text = f"sshs_model_hash {recorded[:10]} verifies"
    legacy = lora.metadata.get("sshs_legacy_hash")
    if legacy:
        text += ", sshs_legacy_hash " + (
            "verifies"
            if legacy == legacy_hash
            else f"differs ({legacy_hash}: ss_* metadata was edited)"
        )
    return text
