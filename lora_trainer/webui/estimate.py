"""A rough estimate of the extra GPU memory and the time a run needs, with advice when it will not fit.

The model's own weights are already on the GPU (the WebUI holds them), so only what
training adds is counted: the LoRA weights with their gradients and AdamW state, the
activations kept for the backward pass, and the VAE's work when latents are not cached.
The activation figures are typical peaks of SD-family training with PyTorch's SDPA
attention under fp16/bf16 autocast at each family's native size; everything scales with
batch size and pixel count. They are estimates, and the tab says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GIB = 1024**3

# per family: native pixel count, activation GiB at batch 1 without / with gradient
# checkpointing (fp16 autocast), LoRA parameters per unit of rank (UNet + text encoders),
# extra GiB when the text encoder trains too, VAE encoding GiB at native size (fp16),
# seconds per step at batch 1 on a 24 GB-class GPU (fp16, no checkpointing)
FAMILY = {
    "sd1": {"pixels": 512 * 512, "act": 3.0, "act_gc": 1.0, "lora_per_rank": 0.6e6, "te": 0.4, "vae": 1.2, "s_step": 0.18},
    "sd2": {"pixels": 768 * 768, "act": 6.0, "act_gc": 1.8, "lora_per_rank": 0.7e6, "te": 0.8, "vae": 2.6, "s_step": 0.45},
    "sdxl": {"pixels": 1024 * 1024, "act": 12.0, "act_gc": 3.5, "lora_per_rank": 3.4e6, "te": 1.5, "vae": 4.5, "s_step": 0.9},
}  # fmt: skip
BYTES_PER_LORA_PARAM = 4 + 4 + 8  # fp32 weight, gradient, two AdamW moments
OVERHEAD_GIB = 0.6  # CUDA context, allocator slack, optimizer temporaries
CPU_SLOWDOWN = 60.0  # CPU training is this much slower than a mid-range GPU
# seconds per fp32 step at batch 1 on 2 CPU cores however small the images: moving the
# weights through the cores dominates there (`python -m lora_trainer bench`, 64 px: SD1.5
# 1.99 s measured; SD2 and SDXL from their bf16 runs, 0.86 s and 1.98 s, times FP32_FACTOR)
CPU_FLOOR_S = {"sd1": 2.0, "sd2": 1.7, "sdxl": 4.0}
CHECKPOINTING_SLOWDOWN = 1.3
FP32_FACTOR = 2.0  # activations and time without mixed precision


@dataclass(frozen=True)
class RunShape:
    """What the estimate depends on."""

    arch: str
    width: int
    height: int
    batch_size: int
    rank: int
    total_steps: int
    mixed_precision: str
    gradient_checkpointing: bool
    cache_latents: bool
    train_text_encoder: bool
    on_gpu: bool


@dataclass
class Estimate:
    need_gib: float
    free_gib: float | None  # None on the CPU or when unknown
    seconds: float
    on_gpu: bool = True
    warnings: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.free_gib is None or self.need_gib <= self.free_gib

    def lines(self) -> list[str]:
        """Plain-text lines for the tab."""
        out = [f"Takes roughly {format_duration(self.seconds)} (a rough estimate)."]
        if self.on_gpu:
            memory = f"about {self.need_gib:.1f} GB of GPU memory on top of the loaded model"
            if self.free_gib is not None:
                memory += f" ({self.free_gib:.1f} GB free)"
            out.insert(0, f"Needs {memory}.")
        return out + self.warnings + [f"- {a}" for a in self.advice]


def estimate(shape: RunShape, free_gib: float | None) -> Estimate:
    """Memory and time for `shape`; `free_gib` is what the GPU has left (None: unknown/CPU)."""
    family = FAMILY.get(shape.arch, FAMILY["sd1"])
    scale = shape.batch_size * (shape.width * shape.height) / family["pixels"]
    precision = 1.0 if shape.mixed_precision in ("fp16", "bf16") else FP32_FACTOR
    act = family["act_gc"] if shape.gradient_checkpointing else family["act"]
    activations = act * scale * precision
    if shape.train_text_encoder:
        activations += family["te"] * shape.batch_size * precision
    lora = family["lora_per_rank"] * shape.rank * BYTES_PER_LORA_PARAM / GIB
    vae = 0.0 if shape.cache_latents else family["vae"] * scale * precision
    need = activations + lora + vae + OVERHEAD_GIB
    seconds = shape.total_steps * _seconds_per_step(shape, family, scale, precision)
    result = Estimate(round(need, 1), free_gib if shape.on_gpu else None, seconds, shape.on_gpu)
    if not shape.on_gpu:
        result.warnings.append("Training runs on the CPU: expect it to be very slow.")
    elif free_gib is not None and need > free_gib:
        result.warnings.append("Warning: this will probably not fit in the GPU's free memory.")
        result.advice += advice(shape)
    return result


def _seconds_per_step(shape: RunShape, family: dict, scale: float, precision: float) -> float:
    seconds = family["s_step"] * scale * precision
    if shape.gradient_checkpointing:
        seconds *= CHECKPOINTING_SLOWDOWN
    if not shape.on_gpu:
        floor = CPU_FLOOR_S.get(shape.arch, CPU_FLOOR_S["sd1"]) * precision / FP32_FACTOR
        seconds = max(seconds * CPU_SLOWDOWN, floor)
    return seconds


def advice(shape: RunShape) -> list[str]:
    """What to change to need less memory, most effective first."""
    tips = []
    if not shape.gradient_checkpointing:
        tips.append("Turn on gradient checkpointing (about a third of the memory, a bit slower).")
    if not shape.cache_latents:
        tips.append("Turn on cache latents (the VAE then runs once, before training).")
    if shape.batch_size > 1:
        tips.append(
            "Use batch size 1 (raise gradient accumulation steps to keep the same effective batch)."
        )
    if shape.mixed_precision not in ("fp16", "bf16"):
        tips.append("Use mixed precision bf16 (or fp16 on older GPUs).")
    if shape.train_text_encoder:
        tips.append("Train the UNet only (network_train_unet_only).")
    native = int(FAMILY.get(shape.arch, FAMILY["sd1"])["pixels"] ** 0.5)
    if max(shape.width, shape.height) > native * 3 // 4:
        tips.append(f"Lower the resolution (e.g. {native * 3 // 4}).")
    return tips


def free_gpu_gib(device) -> float | None:
    """Free memory on `device`, counting what PyTorch holds cached but unused; None off CUDA."""
    import torch

    if getattr(device, "type", "cpu") != "cuda" or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(device)
    cached_unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return (free + cached_unused) / GIB


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '2 h 05 min'."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours, rest = divmod(int(minutes), 60)
    return f"{hours} h {rest:02d} min"
