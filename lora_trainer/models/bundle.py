"""ModelBundle: the diffusers modules a training run needs, wherever they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

# kohya's ss_base_model_version per model family ("_v" is added for v-prediction on SD1/SD2)
BASE_MODEL_VERSIONS = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}
DEFAULT_RESOLUTIONS = {"sd1": 512, "sd2": 768, "sdxl": 1024}
V_PREDICTION = "v_prediction"


@dataclass
class ModelSource:
    """Where the base model came from, for metadata (kohya's ss_sd_model_* keys)."""

    name: str
    path: Path | None = None
    legacy_hash: str | None = None  # 8 hex digits, kohya's ss_sd_model_hash
    sha256: str | None = None  # kohya's ss_new_sd_model_hash


@dataclass
class ModelBundle:
    """UNet, text encoder(s), tokenizer(s) and VAE in diffusers/transformers layout."""

    arch: str  # "sd1", "sd2", "sdxl"
    unet: nn.Module
    text_encoders: list[nn.Module]
    tokenizers: list[Any]
    vae: nn.Module
    scheduler_config: dict[str, Any]
    source: ModelSource
    scale_factor: float = 0.18215
    prediction_type: str = "epsilon"  # or "v_prediction"
    vae_source: ModelSource | None = None  # set when the VAE came from its own file (kohya --vae)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def text_encoder(self) -> nn.Module:
        return self.text_encoders[0]

    @property
    def tokenizer(self) -> Any:
        return self.tokenizers[0]

    @property
    def is_sdxl(self) -> bool:
        return self.arch == "sdxl"

    @property
    def v2(self) -> bool:
        """kohya's --v2: an SD2.x model."""
        return self.arch == "sd2"

    @property
    def v_parameterization(self) -> bool:
        return self.prediction_type == V_PREDICTION

    @property
    def base_model_version(self) -> str:
        """kohya's ss_base_model_version: sd_v1, sd_v1_v, sd_v2, sd_v2_v or sdxl_base_v1-0."""
        version = BASE_MODEL_VERSIONS[self.arch]
        if self.v_parameterization and not self.is_sdxl:
            version += "_v"
        return version

    @property
    def text_encoder_prefixes(self) -> list[str]:
        """kohya's key prefixes for the text encoders: lora_te, or lora_te1/lora_te2 on SDXL."""
        if len(self.text_encoders) == 1:
            return ["lora_te"]
        return [f"lora_te{i + 1}" for i in range(len(self.text_encoders))]

    def modules(self) -> dict[str, nn.Module]:
        named = {"unet": self.unet, "vae": self.vae}
        for prefix, te in zip(self.text_encoder_prefixes, self.text_encoders):
            named[prefix.removeprefix("lora_")] = te
        return named
