"""Sample images during training, as kohya's sample_images does, without disturbing training."""

from __future__ import annotations

import contextlib
import inspect
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..config import TrainConfig
from ..errors import UserError
from ..models.bundle import ModelBundle
from .batch import concat_conditioning
from .conditioning import Conditioning, PromptOptions, add_size_conditioning
from .events import EventSink, MessageEvent, SampleEvent
from .sample_prompts import SamplePrompt, load_sample_prompts, unused_options
from .samplers import build_scheduler, canonical_sampler
from .weighted_conditioning import encode_weighted_prompts

logger = logging.getLogger(__name__)

AutocastFn = Callable[[], contextlib.AbstractContextManager]


@dataclass(frozen=True)
class SampleSchedule:
    """kohya's rules for when to sample: at first, every N epochs, or else every N steps."""

    every_n_steps: int | None = None
    every_n_epochs: int | None = None
    at_first: bool = False

    @classmethod
    def from_config(cls, config: TrainConfig) -> SampleSchedule:
        return cls(
            config.sample_every_n_steps, config.sample_every_n_epochs, config.sample_at_first
        )

    @property
    def active(self) -> bool:
        return bool(self.every_n_steps or self.every_n_epochs or self.at_first)

    def after_step(self, step: int) -> bool:
        # kohya: sample_every_n_epochs, when set, replaces sample_every_n_steps
        n = self.every_n_steps
        return self.every_n_epochs is None and bool(n) and step % n == 0

    def after_epoch(self, epoch: int) -> bool:
        n = self.every_n_epochs
        return bool(n) and epoch % n == 0


def sample_file_name(output_name: str, epoch: int | None, step: int, prompt: SamplePrompt) -> str:
    """kohya's name: `<name>_e000001_00_<time>_<seed>.png` per epoch, `<name>_000010_...` per step."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime())
    number = f"e{epoch:06d}" if epoch is not None else f"{step:06d}"
    seed = "" if prompt.seed is None else f"_{prompt.seed}"
    return f"{output_name}_{number}_{prompt.index:02d}_{stamp}{seed}.png"


@contextlib.contextmanager
def preserved_rng(generators: Sequence[torch.Generator] = ()) -> Iterator[None]:
    """Put every random state back afterwards, so sampling never changes what training draws."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    py, npy = random.getstate(), np.random.get_state()
    own = [g.get_state() for g in generators]
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        random.setstate(py)
        np.random.set_state(npy)
        for g, state in zip(generators, own):
            g.set_state(state)


@contextlib.contextmanager
def eval_mode(modules: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Eval mode inside (no LoRA dropout), each submodule's own train flag restored after."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


class ImageSampler:
    """Makes the sample images of a prompt file with the model as it is being trained."""

    def __init__(
        self,
        bundle: ModelBundle,
        config: TrainConfig,
        output_dir: Path,
        device: torch.device,
        emit: EventSink,
    ) -> None:
        self.bundle, self.config, self.device, self.emit = bundle, config, device, emit
        self.schedule = SampleSchedule.from_config(config)
        self.folder = output_dir / "sample"
        self.prompt_file = Path(config.sample_prompts or "")
        self.zero_terminal_snr = config.zero_terminal_snr
        self.prompt_options = PromptOptions.from_config(config)  # clip_skip, max_token_length
        self._warned_long: set[str] = set()  # prompts already reported as cut

    def prompts(self) -> list[SamplePrompt]:
        """Read the prompt file now: like kohya, edits made during training are picked up."""
        return load_sample_prompts(self.prompt_file, self.config.sample_sampler)

    def generate(
        self,
        epoch: int | None,
        step: int,
        autocast: AutocastFn = contextlib.nullcontext,
        keep: Sequence[torch.Generator] = (),
    ) -> list[Path]:
        """One image per prompt, saved under `sample/`; `epoch` None names files by step."""
        try:
            prompts = self.prompts()
        except UserError as exc:  # the file was edited into something unusable: keep training
            self.emit(MessageEvent(f"No sample images: {exc.message}", level="warning"))
            return []
        self.folder.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        with preserved_rng(keep), eval_mode(list(self.bundle.modules().values())):
            for prompt in prompts:
                # kohya: no seed means a new random one each time (and none in the file name)
                seed = (
                    random.SystemRandom().randrange(2**32) if prompt.seed is None else prompt.seed
                )
                try:
                    image = self.image(prompt, seed, autocast)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    self.emit(MessageEvent(_OOM_TEXT.format(p=prompt), level="warning"))
                    break
                path = self.folder / sample_file_name(self.config.output_name, epoch, step, prompt)
                image.save(path, pnginfo=_infotext(prompt, seed))
                paths.append(path)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if paths:
            done = tuple(p.prompt for p in prompts[: len(paths)])
            self.emit(SampleEvent(tuple(paths), step, epoch, done))
            self.emit(MessageEvent(f"Saved {len(paths)} sample images in {self.folder}"))
        return paths

    @torch.no_grad()
    def image(
        self, prompt: SamplePrompt, seed: int, autocast: AutocastFn = contextlib.nullcontext
    ) -> Image.Image:
        """Denoise from `seed` and decode one image."""
        generator = torch.Generator().manual_seed(seed)
        latents = self._denoise(prompt, generator, autocast)
        return self._decode(latents, prompt)

    def _denoise(
        self, prompt: SamplePrompt, generator: torch.Generator, autocast: AutocastFn
    ) -> torch.Tensor:
        bundle, unet = self.bundle, self.bundle.unet
        scheduler = build_scheduler(
            prompt.sampler, bundle.scheduler_config, bundle.prediction_type, self.zero_terminal_snr
        )
        scheduler.set_timesteps(prompt.steps, device=self.device)
        guided = prompt.scale > 1.0  # diffusers' rule: a scale of 1 or less is the plain prompt
        cond = self._conditioning(prompt, guided, autocast)
        factor = vae_scale(bundle)
        shape = (1, unet.config.in_channels, prompt.height // factor, prompt.width // factor)
        # drawn on the CPU so a seed gives the same image on every device
        latents = torch.randn(shape, generator=generator).to(self.device)
        latents = latents * scheduler.init_noise_sigma
        step_kwargs = _step_kwargs(scheduler, generator)
        dtype = next(unet.parameters()).dtype
        for t in scheduler.timesteps:
            model_in = torch.cat([latents] * 2) if guided else latents
            model_in = scheduler.scale_model_input(model_in, t).to(dtype)
            with autocast():
                pred = unet(
                    model_in, t, cond.context, added_cond_kwargs=cond.added_cond_kwargs
                ).sample.float()
            if guided:
                uncond, text = pred.chunk(2)
                pred = uncond + prompt.scale * (text - uncond)
            latents = scheduler.step(pred, t, latents, **step_kwargs).prev_sample
        return latents

    def _conditioning(
        self, prompt: SamplePrompt, guided: bool, autocast: AutocastFn
    ) -> Conditioning:
        """The negative prompt's and the prompt's conditioning (the prompt's alone unguided).

        Both are weighted like kohya's samples: `(word:1.3)`, `(word)`, `[word]`.
        """
        captions = [prompt.negative_prompt or "", prompt.prompt] if guided else [prompt.prompt]
        extra = size_conditioning(prompt.width, prompt.height)
        # the text encoders may sit elsewhere (kept in RAM while their outputs are cached)
        text_device = next(self.bundle.text_encoder.parameters()).device
        options = self.prompt_options
        with autocast():
            weighted = encode_weighted_prompts(self.bundle, captions, text_device, options)
        self._warn_if_cut(prompt, captions, weighted.truncated)
        cond = add_size_conditioning(
            self.bundle, weighted.conditioning, extra, len(captions), options
        )
        return concat_conditioning([cond], self.device)

    def _warn_if_cut(
        self, prompt: SamplePrompt, captions: list[str], truncated: tuple[bool, ...]
    ) -> None:
        kinds = ["negative prompt", "prompt"] if len(captions) == 2 else ["prompt"]
        for caption, kind, cut in zip(captions, kinds, truncated):
            if cut and caption not in self._warned_long:
                self._warned_long.add(caption)
                text = _LONG_TEXT.format(kind=kind, n=prompt.index + 1)
                self.emit(MessageEvent(text, level="warning"))

    def _decode(self, latents: torch.Tensor, prompt: SamplePrompt) -> Image.Image:
        vae = self.bundle.vae
        param = next(vae.parameters())
        latents = latents / self.bundle.scale_factor
        pixels = vae.decode(latents.to(param.device, param.dtype)).sample.float()
        if not torch.isfinite(pixels).all():
            self.emit(MessageEvent(_NAN_TEXT.format(p=prompt, dtype=param.dtype), level="warning"))
            pixels = torch.nan_to_num(pixels)
        array = ((pixels[0] / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return Image.fromarray(array.permute(1, 2, 0).cpu().numpy())


_OOM_TEXT = "Out of GPU memory while sampling prompt {p.index} ({p.width}x{p.height}); samples skipped this time"
_NO_PROMPTS_TEXT = (
    "sample images are asked for but sample_prompts is not set: none will be made. "
    "Give a .txt file with one prompt per line"
)
_LONG_TEXT = (
    "The {kind} of sample {n} is longer than the text encoder takes; its end was cut "
    "(225 tokens for SD1/SD2, max_token_length for SDXL)"
)
_NAN_TEXT = (
    "Sample {p.index} decoded to NaN (VAE in {dtype}); the image is black. "
    "A float32 VAE avoids this"
)


def size_conditioning(width: int, height: int) -> dict:
    """SDXL's size extras for a generated image, as kohya samples: full size, no crop."""
    return {
        "original_size": (height, width),
        "crop_top_left": (0, 0),
        "target_size": (height, width),
    }


def vae_scale(bundle: ModelBundle) -> int:
    """Pixels per latent: 8 for every SD VAE."""
    blocks = bundle.vae.config.block_out_channels
    return 2 ** (len(blocks) - 1)


def _step_kwargs(scheduler, generator: torch.Generator) -> dict:
    # ancestral and SDE samplers draw noise each step; they take the prompt's generator
    accepted = inspect.signature(scheduler.step).parameters
    return {"generator": generator} if "generator" in accepted else {}


def _infotext(prompt: SamplePrompt, seed: int) -> PngInfo:
    """The WebUI's "parameters" text, so PNG Info shows how the sample was made."""
    lines = [prompt.prompt]
    if prompt.negative_prompt:
        lines.append(f"Negative prompt: {prompt.negative_prompt}")
    lines.append(
        f"Steps: {prompt.steps}, Sampler: {canonical_sampler(prompt.sampler)}, "
        f"CFG scale: {prompt.scale}, Seed: {seed}, Size: {prompt.width}x{prompt.height}"
    )
    info = PngInfo()
    info.add_text("parameters", "\n".join(lines))
    return info


def check_sample_setup(config: TrainConfig, emit: EventSink) -> None:
    """Before any model loads: the prompt file parses, every sampler name is known."""
    canonical_sampler(config.sample_sampler)
    if not config.sample_prompts:
        if SampleSchedule.from_config(config).active:
            # kohya goes on without samples too (the kohya_ss GUI leaves the prompt file empty)
            emit(MessageEvent(_NO_PROMPTS_TEXT, level="warning"))
        return
    for prompt in load_sample_prompts(config.sample_prompts, config.sample_sampler):
        canonical_sampler(
            prompt.sampler, where=f"{config.sample_prompts}, prompt {prompt.index + 1}"
        )
    unused = unused_options(config.sample_prompts)
    if unused:
        emit(MessageEvent(f"Sample prompts: {', '.join(unused)} not used for Stable Diffusion"))
    if not SampleSchedule.from_config(config).active:
        emit(
            MessageEvent(
                "sample_prompts is set but no sample images will be made: set "
                "sample_every_n_steps, sample_every_n_epochs or sample_at_first",
                level="warning",
            )
        )
