"""Fake of modules/sd_models.py (A1111 v1.10.1): checkpoint records and the loaded-model holder.

Real:
- `ModelType` enum (SD1, SD2, SDXL, SSD, SD3);
- `CheckpointInfo(filename)`: `filename`, `name` (path below the checkpoint folder),
  `name_for_extra` (file stem), `model_name`, `hash` (the old 8-hex `model_hash`: sha256
  of 64 KiB at offset 1 MiB), `sha256` (whole file; computed when the model is loaded),
  `shorthash` (its first 10 hex), `title` "name [shorthash]", `short_title`, `ids`,
  `metadata` (the safetensors header's __metadata__), `register()`;
- `model_data = SdModelData()`: `sd_model` (None until a model is loaded),
  `get_sd_model()` (the real one loads the selected checkpoint on first use when none was
  ever loaded; this fake never loads), `set_sd_model(v)`; `shared.sd_model` is a property
  over it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import struct

from modules import shared

model_dir = "Stable-diffusion"
model_path = os.path.abspath(os.path.join("models", model_dir))

checkpoints_list: dict = {}
checkpoint_aliases: dict = {}


class ModelType(enum.Enum):
    SD1 = 1
    SD2 = 2
    SDXL = 3
    SSD = 4
    SD3 = 5


def model_hash(filename):
    """Old hash that only looks at a small part of the file."""
    try:
        with open(filename, "rb") as file:
            m = hashlib.sha256()
            file.seek(0x100000)
            m.update(file.read(0x10000))
            return m.hexdigest()[0:8]
    except FileNotFoundError:
        return "NOFILE"


def read_metadata_from_safetensors(filename):
    with open(filename, mode="rb") as file:
        metadata_len = struct.unpack("<Q", file.read(8))[0]
        header = json.loads(file.read(metadata_len))
    return header.get("__metadata__", {})


def _sha256(filename):
    try:
        with open(filename, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except FileNotFoundError:
        return None


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        abspath = os.path.abspath(filename)
        ckpt_dir = getattr(shared.cmd_opts, "ckpt_dir", None)
        abs_ckpt_dir = os.path.abspath(ckpt_dir) if ckpt_dir is not None else None
        self.is_safetensors = os.path.splitext(filename)[1].lower() == ".safetensors"
        if abs_ckpt_dir and abspath.startswith(abs_ckpt_dir):
            name = abspath.replace(abs_ckpt_dir, "")
        elif abspath.startswith(model_path):
            name = abspath.replace(model_path, "")
        else:
            name = os.path.basename(filename)
        if name.startswith(("\\", "/")):
            name = name[1:]

        self.metadata = {}
        if self.is_safetensors and os.path.exists(filename):
            self.metadata = read_metadata_from_safetensors(filename)
        self.name = name
        self.name_for_extra = os.path.splitext(os.path.basename(filename))[0]
        self.model_name = os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0]
        self.hash = model_hash(filename)
        # the real one reads the hash cache; a loaded model always has it computed
        self.sha256 = _sha256(filename)
        self.shorthash = self.sha256[0:10] if self.sha256 else None
        self.title = name if self.shorthash is None else f"{name} [{self.shorthash}]"
        self.short_title = (
            self.name_for_extra
            if self.shorthash is None
            else f"{self.name_for_extra} [{self.shorthash}]"
        )
        self.ids = [self.hash, self.model_name, self.title, name, self.name_for_extra]
        self.ids += [f"{name} [{self.hash}]"]
        if self.shorthash:
            self.ids += [
                self.shorthash,
                self.sha256,
                f"{self.name} [{self.shorthash}]",
                f"{self.name_for_extra} [{self.shorthash}]",
            ]

    def register(self):
        checkpoints_list[self.title] = self
        for id_ in self.ids:
            checkpoint_aliases[id_] = self


class SdModelData:
    def __init__(self):
        self.sd_model = None
        self.loaded_sd_models = []
        self.was_loaded_at_least_once = False

    def get_sd_model(self):
        return self.sd_model

    def set_sd_model(self, v, already_loaded=False):
        self.sd_model = v
        if v in self.loaded_sd_models:
            self.loaded_sd_models.remove(v)
        if v is not None:
            self.loaded_sd_models.insert(0, v)
            self.was_loaded_at_least_once = True


model_data = SdModelData()
