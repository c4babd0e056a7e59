"""A LoRA network on diffusers modules, injected with peft, exported with kohya's key names."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from ..errors import LoraFileError
from .dropout import KohyaDropout, install_kohya_forward
from .targets import LoraTarget

if TYPE_CHECKING:
    from .blocks import BlockPlan

ADAPTER = "default"


@dataclass(frozen=True)
class NetworkSpec:
    """Rank and alpha as kohya names them (network_dim / network_alpha), LoCon and dropouts."""

    rank: int
    alpha: float
    dropout: float | None = None  # kohya's network_dropout (see lora/dropout.py)
    conv_rank: int | None = None  # LoCon: rank and alpha of the 3x3 convolutions
    conv_alpha: float | None = None
    rank_dropout: float | None = None
    module_dropout: float | None = None

    @property
    def kohya_dropout(self) -> KohyaDropout:
        return KohyaDropout(self.dropout, self.rank_dropout, self.module_dropout)


@dataclass
class InjectedPart:
    """One model (UNet or a text encoder) with LoRA layers in it."""

    name: str  # "unet", "te", "te1", "te2"
    model: nn.Module
    targets: list[LoraTarget]


class LoraNetwork:
    """The LoRA layers of one training run, across the UNet and the text encoder(s)."""

    def __init__(self, parts: list[InjectedPart], spec: NetworkSpec) -> None:
        self.parts = parts
        self.spec = spec
        self.notes: list[str] = []  # what the user should know about how it was built
        self.block_plan: BlockPlan | None = None  # per-block UNet lr weights (kohya's block_lr)

    @classmethod
    def inject(
        cls, models: dict[str, tuple[nn.Module, list[LoraTarget]]], spec: NetworkSpec
    ) -> LoraNetwork:
        """Wrap every target module with a peft LoRA layer (kaiming-uniform down, zero up)."""
        parts = []
        for name, (model, targets) in models.items():
            if not targets:
                continue
            inject_adapter_in_model(_lora_config(targets, spec), model, adapter_name=ADAPTER)
            _set_module_ranks(model, targets, spec)
            parts.append(InjectedPart(name, model, targets))
        network = cls(parts, spec)
        network._check_ranks()
        network._upcast_lora_weights()
        if spec.kohya_dropout.active:
            for _, layer in network.layers():
                install_kohya_forward(layer, ADAPTER, spec.kohya_dropout)
        return network

    def _check_ranks(self) -> None:
        # peft matches rank_pattern keys as regular expressions: make sure each module got
        # exactly the rank kohya gives it.
        for target, layer in self.layers():
            expected, _ = rank_and_alpha(target, self.spec)
            if layer.r[ADAPTER] != expected:
                raise RuntimeError(
                    f"{target.module_path} got rank {layer.r[ADAPTER]}, not {expected}"
                )

    def set_lora_dtype(self, dtype: torch.dtype) -> None:
        """Keep the LoRA weights in `dtype` (kohya's full_fp16/full_bf16 train them in half precision)."""
        for _, layer in self.layers():
            layer.lora_A[ADAPTER].to(dtype)
            layer.lora_B[ADAPTER].to(dtype)

    def _upcast_lora_weights(self) -> None:
        # peft gives LoRA weights the dtype of the base layer; they train in fp32 whatever
        # the base model's precision (kohya does the same).
        for _, layer in self.layers():
            layer.lora_A[ADAPTER].float()
            layer.lora_B[ADAPTER].float()

    def layers(self, part: str | None = None) -> Iterator[tuple[LoraTarget, nn.Module]]:
        """(target, peft LoRA layer) pairs, in kohya order."""
        for p in self.parts:
            if part is not None and p.name != part:
                continue
            for target in p.targets:
                yield target, p.model.get_submodule(target.module_path)

    def parameters(self, part: str | None = None) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        for _, layer in self.layers(part):
            params += [layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight]
        return params

    @property
    def part_names(self) -> list[str]:
        return [p.name for p in self.parts]

    def kohya_state_dict(self) -> dict[str, torch.Tensor]:
        """`lora_down.weight`, `lora_up.weight` and a 0-dim `alpha` per module, kohya-named."""
        out: dict[str, torch.Tensor] = {}
        for target, layer in self.layers():
            down = layer.lora_A[ADAPTER].weight.detach()
            up = layer.lora_B[ADAPTER].weight.detach()
            if target.linear_as_conv1x1:  # SD2 proj_in/proj_out: kohya's [r, C, 1, 1] shapes
                down, up = down[:, :, None, None], up[:, :, None, None]
            out[f"{target.kohya_name}.alpha"] = torch.tensor(float(layer.lora_alpha[ADAPTER]))
            out[f"{target.kohya_name}.lora_down.weight"] = down
            out[f"{target.kohya_name}.lora_up.weight"] = up
        return out

    @torch.no_grad()
    def load_kohya_state_dict(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Copy weights (and alphas) from a kohya file into this network; names and ranks must match."""
        ours = {t.kohya_name: layer for t, layer in self.layers()}
        theirs = {k.split(".", 1)[0] for k in tensors}
        missing, extra = sorted(ours.keys() - theirs), sorted(theirs - ours.keys())
        if missing or extra:
            detail = f"{len(missing)} modules missing, {len(extra)} unexpected"
            example = (missing or extra)[0]
            raise LoraFileError(
                f"the LoRA does not fit this model and network ({detail}, e.g. {example})",
                where=source,
                fix="use a LoRA trained for the same base model with the same options, "
                "or set dim_from_weights = true to build the network from the file",
            )
        for name, layer in ours.items():
            self._load_module(name, layer, tensors, source)

    def _load_module(self, name: str, layer: nn.Module, tensors: dict, source: str) -> None:
        down, up = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        file_down = tensors[f"{name}.lora_down.weight"]
        file_up = tensors[f"{name}.lora_up.weight"]
        if file_down.shape[0] != down.shape[0]:
            raise LoraFileError(
                f"module {name} has rank {file_down.shape[0]}, the network has rank {down.shape[0]}",
                where=source,
                fix=f"set dim_from_weights = true (or network_dim = {file_down.shape[0]}) "
                "to continue from this file",
            )
        if _without_1x1(file_down.shape) != _without_1x1(down.shape) or _without_1x1(
            file_up.shape
        ) != _without_1x1(up.shape):
            raise LoraFileError(
                f"module {name} has shapes {tuple(file_down.shape)} / {tuple(file_up.shape)}, "
                f"the model needs {tuple(down.shape)} / {tuple(up.shape)}",
                where=source,
                fix="use a LoRA trained for this base model family",
            )
        # kohya writes 1x1 convs (and SD2's proj_in/proj_out) as [r, C, 1, 1]; a Linear
        # takes the same numbers as [r, C], and the other way round
        down.copy_(file_down.reshape(down.shape).to(down.dtype))
        up.copy_(file_up.reshape(up.shape).to(up.dtype))
        alpha_key = f"{name}.alpha"
        alpha = float(tensors[alpha_key]) if alpha_key in tensors else float(down.shape[0])
        layer.lora_alpha[ADAPTER] = alpha
        layer.scaling[ADAPTER] = alpha / down.shape[0]

    def remove(self) -> None:
        """Put every original module back, leaving no peft layer in the models."""
        for part in self.parts:
            for target in part.targets:
                parent_path, _, child = target.module_path.rpartition(".")
                parent = part.model.get_submodule(parent_path) if parent_path else part.model
                layer = getattr(parent, child)
                base = getattr(layer, "base_layer", None)
                if base is not None:
                    setattr(parent, child, base)
        self.parts = []


def rank_and_alpha(target: LoraTarget, spec: NetworkSpec) -> tuple[int, float]:
    """The module's own rank/alpha, else conv_dim/conv_alpha (3x3) or network_dim/alpha."""
    if target.rank is not None:
        return target.rank, float(target.alpha if target.alpha is not None else target.rank)
    if target.is_conv3x3:
        if spec.conv_rank is None or spec.conv_alpha is None:
            raise ValueError(f"3x3-conv target {target.module_path} needs a conv rank")
        return spec.conv_rank, spec.conv_alpha
    return spec.rank, spec.alpha


def _set_module_ranks(model: nn.Module, targets: list[LoraTarget], spec: NetworkSpec) -> None:
    """Give modules with their own rank/alpha (block_dims, dim_from_weights) their LoRA size.

    peft's rank_pattern matches every pattern against every module, which is slow for
    hundreds of patterns; re-creating the few differing layers is direct and exact.
    """
    for target in targets:
        if target.rank is None:
            continue
        rank, alpha = rank_and_alpha(target, spec)
        layer = model.get_submodule(target.module_path)
        if layer.r[ADAPTER] != rank or layer.lora_alpha[ADAPTER] != alpha:
            layer.update_layer(
                ADAPTER, r=rank, lora_alpha=alpha, lora_dropout=0.0,
                init_lora_weights=True, use_rslora=False, use_dora=False,
            )  # fmt: skip


def _lora_config(targets: list[LoraTarget], spec: NetworkSpec) -> LoraConfig:
    """peft config: network_dim/alpha everywhere, conv_dim/conv_alpha on 3x3 convs (LoCon)."""
    # modules with their own rank are resized afterwards (_set_module_ranks)
    conv = [t.module_path for t in targets if t.is_conv3x3 and t.rank is None]
    if conv and spec.conv_rank is None:
        raise ValueError("3x3-conv targets need NetworkSpec.conv_rank")
    return LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=0.0,  # kohya's dropouts are not peft's: see install_kohya_forward
        target_modules=[t.module_path for t in targets],
        rank_pattern={path: spec.conv_rank for path in conv},
        alpha_pattern={path: spec.conv_alpha for path in conv},
        init_lora_weights=True,
        bias="none",
    )


def _without_1x1(shape: torch.Size) -> tuple[int, ...]:
    """[r, C, 1, 1] -> (r, C): the shapes under which a 1x1 conv and a Linear LoRA agree."""
    shape = tuple(shape)
    return shape[:2] if len(shape) == 4 and shape[2:] == (1, 1) else shape
