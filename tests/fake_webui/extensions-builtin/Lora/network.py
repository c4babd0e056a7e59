"""Fake of extensions-builtin/Lora/network.py (A1111 v1.10.1): LoRA files on disk and loaded networks.

Real: `SdVersion` (Unknown, SD1, SD2, SDXL); `NetworkOnDisk(name, filename)` reads the
safetensors metadata, `alias` = ss_output_name (else the name), `hash` from
sshs_model_hash (`read_hash()` computes it when missing, as modules/hashes.py sha256 does:
kohya's "addnet" hash of the tensor bytes for .safetensors, the file's sha256 otherwise; no
cache here), `sd_version` from ss_base_model_version / ss_v2; `Network(name,
network_on_disk)` holds `modules` {network layer name: module} and the te/unet
multipliers; `NetworkWeights(network_key, sd_key, w, sd_module)`; `NetworkModule`
with `multiplier()` (te_multiplier when 'transformer' is in the first 20 characters of
the layer name), `calc_scale()` (alpha / dim) and `finalize_updown`. Only plain LoRA
(`lora_up`/`lora_down`/`alpha`) on Linear and 1x1/3x3 Conv2d layers is imitated.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections import namedtuple

from modules import sd_models, shared

NetworkWeights = namedtuple("NetworkWeights", ["network_key", "sd_key", "w", "sd_module"])


class SdVersion(enum.Enum):
    Unknown = 1
    SD1 = 2
    SD2 = 3
    SDXL = 4


class NetworkOnDisk:
    def __init__(self, name, filename):
        self.name = name
        self.filename = filename
        self.metadata = {}
        self.is_safetensors = os.path.splitext(filename)[1].lower() == ".safetensors"
        if self.is_safetensors:
            try:
                self.metadata = sd_models.read_metadata_from_safetensors(filename)
            except Exception:  # the real one reports a broken file and goes on
                self.metadata = {}
        self.alias = self.metadata.get("ss_output_name", self.name)
        self.hash = None
        self.shorthash = None
        self.set_hash(self.metadata.get("sshs_model_hash") or "")
        self.sd_version = self.detect_version()

    def detect_version(self):
        if str(self.metadata.get("ss_base_model_version", "")).startswith("sdxl_"):
            return SdVersion.SDXL
        if str(self.metadata.get("ss_v2", "")) == "True":
            return SdVersion.SD2
        if len(self.metadata):
            return SdVersion.SD1
        return SdVersion.Unknown

    def set_hash(self, v):
        self.hash = v
        self.shorthash = self.hash[0:12]
        if self.shorthash:
            import networks

            networks.available_network_hash_lookup[self.shorthash] = self

    def read_hash(self):
        if not self.hash:
            self.set_hash(_file_sha256(self.filename, addnet=self.is_safetensors))

    def get_alias(self):
        import networks

        preferred = getattr(shared.opts, "lora_preferred_name", "Alias from file")
        if preferred == "Filename" or self.alias.lower() in networks.forbidden_network_aliases:
            return self.name
        return self.alias


class Network:
    def __init__(self, name, network_on_disk):
        self.name = name
        self.network_on_disk = network_on_disk
        self.te_multiplier = 1.0
        self.unet_multiplier = 1.0
        self.dyn_dim = None
        self.modules = {}
        self.bundle_embeddings = {}
        self.mtime = None
        self.mentioned_name = None


class NetworkModuleLora:
    """network_lora.NetworkModuleLora reduced to calc_updown of a plain LoRA."""

    def __init__(self, net, weights):
        self.network = net
        self.network_key = weights.network_key
        self.sd_key = weights.sd_key
        self.sd_module = weights.sd_module
        self.up = weights.w["lora_up.weight"]
        self.down = weights.w["lora_down.weight"]
        self.dim = self.down.shape[0]
        self.alpha = weights.w["alpha"].item() if "alpha" in weights.w else None

    def multiplier(self):
        if "transformer" in self.sd_key[:20]:
            return self.network.te_multiplier
        return self.network.unet_multiplier

    def calc_scale(self):
        if self.dim is not None and self.alpha is not None:
            return self.alpha / self.dim
        return 1.0

    def calc_updown(self, orig_weight):
        up = self.up.to(orig_weight.device, dtype=orig_weight.dtype)
        down = self.down.to(orig_weight.device, dtype=orig_weight.dtype)
        updown = up.reshape(up.shape[0], -1) @ down.reshape(down.shape[0], -1)
        updown = updown.reshape(orig_weight.shape)
        return updown * self.calc_scale() * self.multiplier(), None


def _file_sha256(filename, *, addnet):
    # modules/hashes.py: addnet_hash_safetensors skips the 8-byte length and the JSON header
    digest = hashlib.sha256()
    with open(filename, "rb") as f:
        if addnet:
            f.seek(8 + int.from_bytes(f.read(8), "little"))
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()
