"""The tab's training form without gradio: which fields exist, their defaults, values <-> options.

Main fields carry the options a first-time user meets; every other TrainConfig option gets
a generic field in the "Advanced" group, so options added to the engine appear there too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, get_args, get_origin, get_type_hints

from ..config import TrainConfig
from ..presets import RUN_SPECIFIC

TEXT, MULTILINE, INT, FLOAT, BOOL, CHOICE, LIST = (
    "text",
    "multiline",
    "int",
    "float",
    "bool",
    "choice",
    "list",
)
EXTRAS = ("sample_prompt", "activation_text", "preferred_weight", "overwrite")
# set by the tab itself, never a field: where files go, the device, the model, kohya switches
# that must match the loaded model
NOT_FIELDS = frozenset(
    {"output_dir", "device", "pretrained_model_name_or_path", "overwrite", "sample_prompts",
     "v2", "sdxl", "v_parameterization"}
)  # fmt: skip
OPTIMIZERS = ("AdamW", "AdamW8bit", "PagedAdamW8bit", "Lion", "Lion8bit", "SGDNesterov",
              "Adafactor", "Prodigy", "DAdaptation", "DAdaptAdam", "AdamWScheduleFree")  # fmt: skip


@dataclass(frozen=True)
class Field:
    """One input of the form: an engine option (kohya name) or one of the tab's EXTRAS."""

    name: str
    label: str
    kind: str
    default: Any = None
    choices: tuple[str, ...] = ()
    info: str = ""
    optional: bool = False  # empty means "not set" (kohya's None)
    zero_off: bool = False  # 0 means "not set" too (counts where 0 reads as "never")


def _schedulers() -> tuple[str, ...]:
    from ..train.schedulers import SCHEDULER_ARGS

    return tuple(name for name in SCHEDULER_ARGS if name != "adafactor")


def _samplers() -> tuple[str, ...]:
    from ..train.samplers import SAMPLERS

    return tuple(SAMPLERS)


def main_fields() -> dict[str, list[Field]]:
    """The visible fields by section, with the tab's defaults."""
    return {
        "dataset": [
            Field(
                "train_data_dir",
                "Training images folder",
                TEXT,
                "",
                info="the img folder: sub-folders named <repeats>_<trigger> <class>",
            ),
            Field(
                "reg_data_dir", "Regularization images folder (optional)", TEXT, "", optional=True
            ),
            Field("caption_extension", "Caption files", CHOICE, ".txt", (".txt", ".caption")),
        ],
        "output": [
            Field(
                "output_name",
                "LoRA name",
                TEXT,
                "my_lora",
                info="the file name and the <lora:name> tag",
            ),
            Field(
                "activation_text",
                "Trigger words",
                TEXT,
                "",
                info="added after <lora:...> in prompts; empty: the dataset's class tokens",
            ),
            Field("preferred_weight", "Preferred weight", FLOAT, 0.8),
            Field("overwrite", "Replace existing files with this name", BOOL, False),
        ],
        "network": [
            Field("network_dim", "Rank (network_dim)", INT, 16, info="8-32 for most subjects"),
            Field(
                "network_alpha",
                "Alpha (network_alpha)",
                FLOAT,
                8.0,
                info="strength scale = alpha / rank",
            ),
        ],
        "learning": [
            Field("learning_rate", "Learning rate", FLOAT, 1e-4),
            Field(
                "unet_lr",
                "UNet learning rate",
                FLOAT,
                None,
                optional=True,
                info="empty: the learning rate",
            ),
            Field(
                "text_encoder_lr",
                "Text encoder learning rate",
                FLOAT,
                None,
                optional=True,
                info="empty: the learning rate",
            ),
            Field("optimizer_type", "Optimizer", CHOICE, "AdamW", OPTIMIZERS),
            Field("lr_scheduler", "Learning rate schedule", CHOICE, "constant", _schedulers()),
            Field(
                "lr_warmup_steps", "Warm-up steps", FLOAT, 0.0, info="steps, or a fraction below 1"
            ),
        ],
        "length": [
            Field(
                "max_train_epochs",
                "Epochs",
                INT,
                10,
                optional=True,
                zero_off=True,
                info="empty or 0: use Max steps",
            ),
            Field("max_train_steps", "Max steps", INT, 1600),
            Field("train_batch_size", "Batch size", INT, 1),
            Field(
                "save_every_n_epochs",
                "Save a checkpoint every N epochs",
                INT,
                2,
                optional=True,
                zero_off=True,
                info="0: only the final file",
            ),
        ],
        "image": [
            Field("resolution", "Resolution", TEXT, "512", info='"512" or "width,height"'),
            Field(
                "enable_bucket", "Aspect-ratio buckets", BOOL, True, info="keep images uncropped"
            ),
            Field("flip_aug", "Mirror images", BOOL, False, info="not for asymmetric subjects"),
        ],
        "speed": [
            Field("mixed_precision", "Mixed precision", CHOICE, "bf16", ("no", "fp16", "bf16")),
            Field(
                "gradient_checkpointing",
                "Gradient checkpointing",
                BOOL,
                False,
                info="less memory, slower",
            ),
            Field("cache_latents", "Cache latents", BOOL, True, info="encode images once"),
            Field("network_train_unet_only", "Train the UNet only", BOOL, False),
        ],
        "samples": [
            Field(
                "sample_prompt",
                "Sample prompt",
                MULTILINE,
                "",
                info="one per line, kohya's --w --h --s --l --d --n; empty: the trigger words",
            ),
            Field(
                "sample_every_n_epochs",
                "Sample every N epochs",
                INT,
                1,
                optional=True,
                zero_off=True,
                info="0: no samples",
            ),
            Field("sample_sampler", "Sampler", CHOICE, "euler_a", _samplers()),
        ],
    }


def advanced_fields(shown: set[str]) -> list[Field]:
    """A generic field for every other TrainConfig option, with kohya's default."""
    hints = get_type_hints(TrainConfig)
    fields = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in shown or f.name in NOT_FIELDS or f.name == "output_name":
            continue
        kind, optional = _kind_of(hints[f.name])
        fields.append(Field(f.name, f.name, kind, f.default, optional=optional or kind == LIST))
    return fields


_KINDS = {bool: BOOL, int: INT, float: FLOAT, list: LIST}


def _kind_of(hint: Any) -> tuple[str, bool]:
    """(field kind, optional) for a TrainConfig type hint such as `float | None`."""
    args = get_args(hint)
    optional = type(None) in args
    if optional:
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else str
    return _KINDS.get(get_origin(hint) or hint, TEXT), optional


def typed_as_text(field: Field) -> bool:
    """Optional numbers are text boxes: a browser shows an empty gradio Number as 0 and sends 0."""
    return field.optional and field.kind in (INT, FLOAT) and not field.zero_off


def all_fields() -> list[Field]:
    """Every field in form order: the main sections, then Advanced."""
    sections = main_fields()
    main = [f for fields in sections.values() for f in fields]
    return main + advanced_fields({f.name for f in main})


def arch_defaults(arch: str | None, mixed_precision: str) -> dict[str, Any]:
    """Defaults that depend on the loaded model: its native size, memory-saving for SDXL."""
    from ..models.bundle import DEFAULT_RESOLUTIONS

    resolution = DEFAULT_RESOLUTIONS.get(arch or "sd1", 512)
    return {
        "resolution": str(resolution),
        "max_bucket_reso": max(1024, resolution * 2),
        "mixed_precision": mixed_precision,
        "gradient_checkpointing": arch == "sdxl",
    }


def field_default(field: Field, overrides: dict[str, Any]) -> Any:
    return overrides.get(field.name, field.default)


def value_to_option(field: Field, value: Any) -> Any:
    """A form value as the engine takes it; None means "leave the option out"."""
    if isinstance(value, str):
        value = value.strip()
        if value == "" and field.kind != MULTILINE:
            return None
    if value is None or (field.zero_off and value == 0):
        return None
    if field.kind == INT and isinstance(value, float) and value.is_integer():
        return int(value)  # gradio's Number gives floats
    return value


def option_to_value(field: Field, value: Any) -> Any:
    """An option value as the form shows it."""
    if typed_as_text(field):
        return "" if value is None else str(value)
    if value is None:
        return "" if field.kind in (TEXT, MULTILINE, LIST, CHOICE) else None
    if field.kind == LIST and isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return value


def split_values(fields: list[Field], values: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Form values -> (engine options, tab extras)."""
    options, extras = {}, {}
    for field, value in zip(fields, values, strict=True):
        converted = value_to_option(field, value)
        if field.name in EXTRAS:
            extras[field.name] = converted
        elif converted is not None:
            options[field.name] = converted
    return options, extras


def preset_values(
    fields: list[Field], options: dict[str, Any], extras: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any]:
    """Field values for a loaded preset: tab defaults for its shareable fields, then the preset."""
    out = {}
    for field in fields:
        if field.name in RUN_SPECIFIC or field.name in ("activation_text", "overwrite"):
            continue
        out[field.name] = field_default(field, defaults)
    out.update(options)
    out.update({k: v for k, v in extras.items() if v is not None})
    return out
