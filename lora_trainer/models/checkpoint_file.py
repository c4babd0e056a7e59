"""Load an SD1.x / SD2.x / SDXL checkpoint file (original LDM/SGM layout), offline.

The family comes from the keys. Configs come from the .yaml beside the file when there
is one (as in the WebUI), else from the bundled standard configs. SD2 768-v and 512
models have the same keys; the prediction type comes, in this order, from the caller
(kohya's v_parameterization), the .yaml, the file's modelspec metadata, and for SD2 the
WebUI's own probe of the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import ModelError
from ..lora.hashes import legacy_model_hash, sha256_file
from .arch_configs import (
    ModelConfigs,
    bundled_configs,
    configs_from_ldm_yaml,
    normalise_prediction_type,
    yaml_prediction_type,
)
from .bundle import V_PREDICTION, ModelBundle, ModelSource
from .checkpoint_read import read_checkpoint
from .ldm_bundle import bundle_from_ldm_state_dict
from .ldm_keys import checkpoint_layout, detect_arch
from .v_probe import probe_is_v_prediction
from .vae_file import load_vae


def load_checkpoint_file(
    path: str | Path,
    weight_dtype: torch.dtype = torch.float32,
    *,
    prediction_type: str | None = None,
    vae: str | Path | None = None,
    configs: ModelConfigs | None = None,
) -> ModelBundle:
    """A bundle from a checkpoint file; `vae` replaces its VAE, `configs` its architecture settings."""
    path = Path(path).expanduser()
    tensors, metadata = read_checkpoint(path)
    state_dict = checkpoint_layout(tensors)
    del tensors
    arch = detect_arch(state_dict)
    state_dict = _cast(state_dict, weight_dtype)
    original = _read_yaml(path)
    if configs is None:
        configs = (
            configs_from_ldm_yaml(original, state_dict, arch, path.with_suffix(".yaml"))
            if original
            else bundled_configs(arch)
        )
    decided, origin = _prediction_type(prediction_type, original, metadata)
    vae_module, vae_source = load_vae(vae, configs.vae, weight_dtype) if vae else (None, None)
    bundle = bundle_from_ldm_state_dict(
        state_dict,
        arch,
        prediction_type=decided,
        source=ModelSource(path.name, path, legacy_model_hash(path), sha256_file(path)),
        configs=configs,
        vae=vae_module,
    )
    bundle.vae_source = vae_source
    if decided is None and arch == "sd2":
        decided, origin = _probe(bundle)
    bundle.extra["prediction_type_from"] = origin if decided else "default"
    return bundle


def _cast(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors in `dtype`, each file tensor freed as soon as its copy exists."""
    out = {}
    for key in list(state_dict):
        value = state_dict.pop(key)  # at most one tensor held twice: peak ~ file + one layer
        out[key] = value.to(dtype) if value.is_floating_point() else value
    return out


def _read_yaml(path: Path) -> dict[str, Any] | None:
    """The LDM/SGM config beside the checkpoint (same name, .yaml), as the WebUI picks it."""
    yaml_path = path.with_suffix(".yaml")
    if not yaml_path.is_file():
        return None
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read the model config: {exc}", where=str(yaml_path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ModelError("the model config has no `model` section", where=str(yaml_path))
    return data


def _prediction_type(
    given: str | None, original: dict[str, Any] | None, metadata: dict[str, str]
) -> tuple[str | None, str]:
    """The prediction type and what decided it; (None, "") when nothing says."""
    if given:
        return normalise_prediction_type(given), "option"
    from_yaml = yaml_prediction_type(original) if original else None
    if from_yaml:
        return from_yaml, "yaml"
    from_metadata = metadata_prediction_type(metadata)
    if from_metadata:
        return from_metadata, "metadata"
    return None, ""


def metadata_prediction_type(metadata: dict[str, str]) -> str | None:
    """From a file's modelspec keys (prediction_type "v"/"epsilon", or a "...-v" architecture)."""
    value = str(metadata.get("modelspec.prediction_type", "")).strip().lower()
    if value in ("v", "v_prediction", "v-prediction"):
        return V_PREDICTION
    if value in ("epsilon", "eps"):
        return "epsilon"
    architecture = str(metadata.get("modelspec.architecture", "")).split("/")[0]
    if architecture.endswith("-v"):
        return V_PREDICTION
    return None


def _probe(bundle: ModelBundle) -> tuple[str | None, str]:
    answer = probe_is_v_prediction(bundle.unet)
    if answer is None:
        return None, ""
    prediction = V_PREDICTION if answer else "epsilon"
    bundle.prediction_type = prediction
    bundle.scheduler_config = dict(bundle.scheduler_config, prediction_type=prediction)
    return prediction, "probe"
