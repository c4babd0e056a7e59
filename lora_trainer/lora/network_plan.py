"""Which modules of each model get a LoRA, with which rank and alpha (kohya's create_network*)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import nn

from ..errors import LoraFileError
from .blocks import BlockLayout, BlockPlan, apply_block_plan, resolve_blocks
from .kohya_file import KohyaLora, module_prefix
from .network_args import NetworkOptions, locon_targets
from .targets import LoraTarget, is_sdxl_unet, text_encoder_targets, unet_targets

PartTargets = dict[str, tuple[nn.Module, list[LoraTarget]]]


@dataclass
class TargetPlan:
    """The targets per part ("unet", "te", "te1", "te2") and what the user should be told."""

    parts: PartTargets
    block_plan: BlockPlan | None = None  # per-block lr weights for the optimizer
    notes: list[str] = field(default_factory=list)


def plan_targets(
    unet: nn.Module | None,
    text_encoders: list[tuple[str, nn.Module]],
    options: NetworkOptions,
    weights: KohyaLora | None = None,
) -> TargetPlan:
    """kohya's modules for the parts being trained (`unet` None: text encoder only).

    `text_encoders` pairs each trained encoder with its kohya prefix ("lora_te", "lora_te1"...);
    `weights` is the network_weights file, needed for dim_from_weights.
    """
    if options.from_weights:
        if weights is None:
            raise ValueError("dim_from_weights needs the network_weights file")
        return _from_weights(unet, text_encoders, options, weights)
    parts: PartTargets = {}
    plan = None
    if unet is not None:
        if options.blocks is not None and options.blocks.per_block_dims:
            plan = _unet_block_plan(unet, options)
            include_conv = plan.conv_dims is not None
            parts["unet"] = (unet, apply_block_plan(unet_targets(unet, include_conv), plan))
        else:
            parts["unet"] = (unet, locon_targets(unet, options.conv_rank))
    for prefix, te in text_encoders:  # block-wise args never touch the text encoder (kohya)
        parts[prefix.removeprefix("lora_")] = (te, text_encoder_targets(te, prefix))
    notes = list(plan.warnings) if plan else []
    return TargetPlan(parts, plan, notes + list(options.warnings))


def _unet_block_plan(unet: nn.Module, options: NetworkOptions) -> BlockPlan:
    assert options.blocks is not None
    layout = BlockLayout(sdxl=is_sdxl_unet(getattr(unet, "config", None) or {}))
    return resolve_blocks(
        options.blocks, layout, options.rank, options.alpha, options.conv_rank, options.conv_alpha
    )


def _from_weights(
    unet: nn.Module | None,
    text_encoders: list[tuple[str, nn.Module]],
    options: NetworkOptions,
    weights: KohyaLora,
) -> TargetPlan:
    """kohya's create_network_from_weights: exactly the file's modules, each with its rank/alpha."""
    source = str(weights.path or "network_weights")
    candidates: PartTargets = {}
    if unet is not None:  # kohya also looks in ResNet/down/upsample blocks here
        candidates["unet"] = (unet, unet_targets(unet, include_conv3x3=True))
    for prefix, te in text_encoders:
        candidates[prefix.removeprefix("lora_")] = (te, text_encoder_targets(te, prefix))
    in_file = set(weights.module_names())
    known = {t.kohya_name for _, targets in candidates.values() for t in targets}
    trained_prefixes = {"lora_unet"} if unet is not None else set()
    trained_prefixes |= {prefix for prefix, _ in text_encoders}
    _check_file_fits(in_file, known, trained_prefixes, source)
    parts: PartTargets = {}
    for name, (model, targets) in candidates.items():
        chosen = [
            replace(t, rank=weights.rank(t.kohya_name), alpha=weights.alpha(t.kohya_name))
            for t in targets
            if t.kohya_name in in_file
        ]
        if chosen:
            parts[name] = (model, chosen)
    plan = None
    if unet is not None and options.blocks is not None and options.blocks.block_lr:
        plan = _unet_block_plan(unet, replace(options, conv_rank=None))
    notes = list(options.warnings) + (list(plan.warnings) if plan else [])
    notes += _left_out_notes(in_file, trained_prefixes, source)
    return TargetPlan(parts, plan, notes)


def _check_file_fits(in_file: set[str], known: set[str], trained: set[str], source: str) -> None:
    foreign = sorted(m for m in in_file - known if module_prefix(m) in trained)
    if foreign:
        raise LoraFileError(
            f"{len(foreign)} modules of the LoRA do not exist in this model (e.g. {foreign[0]})",
            where=source,
            fix="use a LoRA trained for this base model family (SD1, SD2 or SDXL)",
        )
    if not any(module_prefix(m) in trained for m in in_file):
        raise LoraFileError(
            "the LoRA has no modules for the parts being trained",
            where=source,
            fix="check network_train_unet_only / network_train_text_encoder_only",
        )


def _left_out_notes(in_file: set[str], trained: set[str], source: str) -> list[str]:
    left = sorted({module_prefix(m) for m in in_file} - trained)
    if not left:
        return []
    count = sum(module_prefix(m) in left for m in in_file)
    return [
        f"{count} modules of {source} ({', '.join(left)}) belong to a part that is not trained: "
        "they are left out of the new file, as kohya does"
    ]
