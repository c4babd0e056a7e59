"""Read and write kohya-format LoRA .safetensors files (keys, dtypes, hashes, atomic save)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from safetensors import safe_open

from ..atomic_file import write_atomic
from ..errors import ConfigError, LoraFileError
from .hashes import precalculate_hashes

DOWN, UP, ALPHA = "lora_down.weight", "lora_up.weight", "alpha"
KOHYA_PARTS = (DOWN, UP, ALPHA)
SAVE_DTYPES = {
    None: torch.float32,
    "float": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
KOHYA_EXAMPLE = "'lora_unet_..._to_q.lora_down.weight'"


@dataclass
class KohyaLora:
    """A kohya LoRA in memory: tensors by key, string metadata, and where it came from."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    path: Path | None = None

    def module_names(self) -> list[str]:
        """Sorted module names, e.g. 'lora_unet_down_blocks_0_attentions_0_proj_in'."""
        return sorted({k.split(".", 1)[0] for k in self.tensors if k.endswith(DOWN)})

    def down(self, module: str) -> torch.Tensor:
        return self.tensors[f"{module}.{DOWN}"]

    def up(self, module: str) -> torch.Tensor:
        return self.tensors[f"{module}.{UP}"]

    def rank(self, module: str) -> int:
        return int(self.down(module).shape[0])

    def alpha(self, module: str) -> float:
        """The module's alpha; a missing alpha means alpha = rank (scale 1), as in kohya."""
        value = self.tensors.get(f"{module}.{ALPHA}")
        return float(value.float().item()) if value is not None else float(self.rank(module))

    def ranks(self) -> set[int]:
        return {self.rank(m) for m in self.module_names()}

    def is_conv(self, module: str) -> bool:
        """True for Conv2d targets (4-D weights), including 1x1 convs such as SD1 proj_in."""
        return self.down(module).ndim == 4

    def kernel_size(self, module: str) -> tuple[int, int] | None:
        down = self.down(module)
        return (int(down.shape[2]), int(down.shape[3])) if down.ndim == 4 else None

    def dtypes(self) -> set[torch.dtype]:
        return {t.dtype for t in self.tensors.values()}

    def text_encoder_prefixes(self) -> list[str]:
        """The text-encoder prefixes present: ['lora_te'] (SD1/SD2) or ['lora_te1', 'lora_te2'] (SDXL)."""
        return sorted(
            {p for p in map(module_prefix, self.module_names()) if p.startswith("lora_te")}
        )


def module_prefix(module: str) -> str:
    """'lora_unet', 'lora_te', 'lora_te1', ... from a kohya module name."""
    return "_".join(module.split("_", 2)[:2])


def save_dtype(
    save_precision: str | None, network_dtype: torch.dtype = torch.float32
) -> torch.dtype:
    """kohya's save dtype: save_precision when given, else the network's own dtype.

    kohya casts the whole network (alphas included) to bf16/fp16 for full_bf16/full_fp16
    and saves it uncast when no save_precision is given, so such files are half precision.
    """
    if save_precision not in SAVE_DTYPES:
        raise ConfigError(
            f"save_precision {save_precision!r} is not supported",
            fix='use "float", "fp16" or "bf16"',
        )
    return network_dtype if save_precision is None else SAVE_DTYPES[save_precision]


def cast_for_save(
    tensors: dict[str, torch.Tensor | float],
    save_precision: str | None,
    network_dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Copies of the tensors on CPU in the save dtype (see save_dtype), alphas 0-dim."""
    dtype = save_dtype(save_precision, network_dtype)
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        tensor = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        if key.endswith("." + ALPHA):
            tensor = tensor.reshape(())  # kohya stores alpha as a scalar, shape []
        # copy=True: the saved dict must never alias live training parameters.
        out[key] = tensor.detach().to(device="cpu", dtype=dtype, copy=True).contiguous()
    return out


def save_kohya_lora(
    path: Path,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    *,
    overwrite: bool = False,
) -> None:
    """Write a kohya LoRA file with sshs_* hashes added; atomic, refuses to overwrite by default."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise LoraFileError(
            "a LoRA can only be saved as .safetensors",
            where=str(path),
            fix="use a .safetensors file name",
        )
    _check_inputs(tensors, metadata, str(path))
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    if path.is_dir():
        raise LoraFileError(
            "the output path is a folder", where=str(path), fix="choose another output_name"
        )
    if path.exists() and not overwrite:
        raise LoraFileError(
            "a LoRA file with this name already exists",
            where=str(path),
            fix="pass --overwrite (overwrite = true) to replace it, or choose another output_name",
        )
    full = dict(metadata)
    full["sshs_model_hash"], full["sshs_legacy_hash"] = precalculate_hashes(tensors, metadata)
    data = safetensors.torch.save(tensors, full)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # readers (the WebUI's Lora list) never see a half-written file
        write_atomic(path, lambda f: f.write(data))
    except OSError as exc:
        raise LoraFileError(
            f"cannot write the LoRA file: {exc.strerror or exc}",
            where=str(path),
            fix="check that the folder is writable and the disk is not full",
        ) from None


def _check_inputs(tensors: dict[str, torch.Tensor], metadata: dict[str, str], where: str) -> None:
    bad = [str(k) for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise LoraFileError(
            f"metadata values must all be strings; not strings: {', '.join(bad[:5])}",
            where=where,
            fix="convert them with str() (or json.dumps for dicts) as kohya does",
        )
    if not tensors:
        raise LoraFileError("there are no LoRA tensors to save", where=where)
    not_tensors = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise LoraFileError(f"values are not tensors: {', '.join(not_tensors[:5])}", where=where)
    check_kohya_keys(tensors, where)


def check_kohya_keys(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Raise LoraFileError unless every key is a kohya LoRA key and modules are complete pairs."""
    keys = list(tensors)
    kohya = [k for k in keys if k.startswith("lora_") and k.partition(".")[2] in KOHYA_PARTS]
    if not kohya:
        raise LoraFileError(
            f"this is not a kohya-format LoRA: it looks like {_describe_foreign(keys)}",
            where=where,
            fix=f"use a kohya-format LoRA (keys like {KOHYA_EXAMPLE}), or convert the file to kohya format first",
        )
    unknown = sorted(set(keys) - set(kohya))
    if unknown:
        raise LoraFileError(
            f"{len(unknown)} keys are not plain kohya LoRA keys, e.g. {unknown[0]!r} (DoRA, LyCORIS or other extras)",
            where=where,
            fix="only plain kohya LoRA/LoCon files (lora_down, lora_up, alpha) can be used here",
        )
    parts: dict[str, set[str]] = {}
    for key in kohya:
        module, _, part = key.partition(".")
        parts.setdefault(module, set()).add(part)
    for module, have in sorted(parts.items()):
        if DOWN not in have or UP not in have:
            missing = DOWN if DOWN not in have else UP
            raise LoraFileError(
                f"module {module!r} has no {missing} tensor",
                where=where,
                fix="the file is incomplete; save or download it again",
            )
        down, up = tensors[f"{module}.{DOWN}"], tensors[f"{module}.{UP}"]
        if down.ndim not in (2, 4) or up.ndim != down.ndim or down.shape[0] != up.shape[1]:
            raise LoraFileError(
                f"module {module!r}: lora_down {tuple(down.shape)} and lora_up {tuple(up.shape)} do not fit "
                "(down is [rank, in], up is [out, rank])",
                where=where,
                fix="the file is damaged or was edited; save or download it again",
            )


def _describe_foreign(keys: list[str]) -> str:
    """A plain-English guess of what a non-kohya tensor file is."""
    text = " ".join(keys)
    example = next(iter(sorted(keys)), "")
    if ".lora_A." in text or ".lora_B." in text:
        kind = "a PEFT / diffusers LoRA"
    elif ".lora.down." in text or "_lora.down." in text:
        kind = "an old diffusers attention-processor LoRA"
    elif "hada_w1" in text or "lokr_w1" in text:
        kind = "a LyCORIS LoHa/LoKr network"
    elif "model.diffusion_model." in text:
        kind = "a full Stable Diffusion checkpoint, not a LoRA"
    elif any(k in ("emb_params", "clip_l", "clip_g", "string_to_param") for k in keys):
        kind = "a textual-inversion embedding, not a LoRA"
    else:
        kind = "an unknown tensor file"
    return f"{kind} (keys like {example!r})" if example else "an empty tensor file"


def load_kohya_lora(path: str | os.PathLike[str]) -> KohyaLora:
    """Read and check a kohya LoRA .safetensors file."""
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise LoraFileError(
            "LoRA file not found", where=where, fix="check the path and the file name"
        )
    if not path.is_file():
        raise LoraFileError(
            "this is a folder, not a LoRA file",
            where=where,
            fix="give the .safetensors file inside it",
        )
    if path.suffix.lower() in (".pt", ".ckpt", ".bin", ".pth"):
        raise LoraFileError(
            "pickle LoRA files cannot be read",
            where=where,
            fix="use the .safetensors version of this LoRA",
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise LoraFileError(
            f"not a valid .safetensors file ({exc})",
            where=where,
            fix="the file is damaged or has another format; download or save it again",
        ) from None
    check_kohya_keys(tensors, where)
    return KohyaLora(tensors=tensors, metadata=metadata, path=path)
