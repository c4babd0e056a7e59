"""Fake of extensions-builtin/Lora/networks.py (A1111 v1.10.1): the built-in Lora extension.

The real module is imported as a top-level `networks` (A1111 puts the extension's folder
on sys.path while it loads its scripts). What is imitated:
- the module globals `available_networks`, `available_network_aliases`,
  `loaded_networks`, `networks_in_memory`, `available_network_hash_lookup`,
  `forbidden_network_aliases`, `originals` (the LoraPatches of torch.nn layers; None
  here, nothing is patched);
- `list_available_networks()` / `process_network_files()`: every .pt/.ckpt/.safetensors
  below `--lora-dir` (and --lyco-dir-backcompat) through `shared.walk_files`, which
  walks sub-folders recursively; a file's name is its stem;
- `assign_network_names_to_compvis_modules(sd_model)`: `network_layer_name` on every
  module of cond_stage_model.wrapped (SD1/SD2) or each conditioner embedder's wrapped
  (SDXL, prefixed "<i>_") and of sd_model.model;
- `convert_diffusers_name_to_compvis` (the UNet block and text-encoder rules) and
  `load_network`;
- `load_networks(names, te_multipliers, unet_multipliers, dyn_dims)` with the real name
  lookup: a name is looked up in `available_network_aliases` (file names and aliases),
  except a name whose lower case is in `forbidden_network_aliases` (an alias that several
  files share, plus "none"), which is looked up in `available_networks` (file names) only;
  names not found are rescanned by file name (`update_available_networks_by_names`), then
  the whole folder is listed again if any is still missing; networks already loaded are
  reused, others come from `networks_in_memory` unless the file is newer; a name still not
  found is left out and logged (the real one also adds "Lora not found: ..." to the
  hijack's comments: there is no sd_hijack here); the cache is then trimmed to
  opts.lora_in_memory_limit (`purge_networks_from_memory`); bundled embeddings are not
  imitated;
- `network_apply_weights(module)`: what the patched Linear/Conv2d forward does before
  running: back the weights up to the CPU (`network_weights_backup`,
  `network_bias_backup`), restore them, then add each loaded network's up@down IN PLACE,
  and remember `network_current_names`; the real one does it lazily on the next forward,
  so after a generation with <lora:...> the live weights stay merged;
- `network_restore_weights_from_backup(module)` and `network_reset_cached_weight`.
"""

from __future__ import annotations

import logging
import os
import re

import network
import torch
from modules import devices, errors, shared
from safetensors.torch import load_file

re_digits = re.compile(r"\d+")
re_x_proj = re.compile(r"(.*)_([qkv]_proj)$")

suffix_conversion = {
    "attentions": {},
    "resnets": {
        "conv1": "in_layers_2",
        "conv2": "out_layers_3",
        "norm1": "in_layers_0",
        "norm2": "out_layers_0",
        "time_emb_proj": "emb_layers_1",
        "conv_shortcut": "skip_connection",
    },
}


def _match(key, pattern):
    m = re.match(pattern, key)
    if not m:
        return None
    return [int(x) if re.match(re_digits, x) else x for x in m.groups()]


def convert_diffusers_name_to_compvis(key, is_sd2):
    """kohya's diffusers-style LoRA key -> the WebUI's network layer name (the SD1/SD2/SDXL rules)."""
    if m := _match(key, r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)"):
        suffix = suffix_conversion.get(m[1], {}).get(m[3], m[3])
        kind = 1 if m[1] == "attentions" else 0
        return f"diffusion_model_input_blocks_{1 + m[0] * 3 + m[2]}_{kind}_{suffix}"
    if m := _match(key, r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)"):
        suffix = suffix_conversion.get(m[0], {}).get(m[2], m[2])
        return f"diffusion_model_middle_block_{1 if m[0] == 'attentions' else m[1] * 2}_{suffix}"
    if m := _match(key, r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)"):
        suffix = suffix_conversion.get(m[1], {}).get(m[3], m[3])
        kind = 1 if m[1] == "attentions" else 0
        return f"diffusion_model_output_blocks_{m[0] * 3 + m[2]}_{kind}_{suffix}"
    if m := _match(key, r"lora_te_text_model_encoder_layers_(\d+)_(.+)"):
        if is_sd2:
            part = m[1].replace("mlp_fc1", "mlp_c_fc").replace("mlp_fc2", "mlp_c_proj")
            return f"model_transformer_resblocks_{m[0]}_{part.replace('self_attn', 'attn')}"
        return f"transformer_text_model_encoder_layers_{m[0]}_{m[1]}"
    return key


def assign_network_names_to_compvis_modules(sd_model):
    network_layer_mapping = {}
    if sd_model.is_sdxl:
        for i, embedder in enumerate(sd_model.conditioner.embedders):
            if not hasattr(embedder, "wrapped"):
                continue
            for name, module in embedder.wrapped.named_modules():
                network_name = f"{i}_{name.replace('.', '_')}"
                network_layer_mapping[network_name] = module
                module.network_layer_name = network_name
    else:
        cond_stage_model = getattr(sd_model.cond_stage_model, "wrapped", sd_model.cond_stage_model)
        for name, module in cond_stage_model.named_modules():
            network_name = name.replace(".", "_")
            network_layer_mapping[network_name] = module
            module.network_layer_name = network_name
    for name, module in sd_model.model.named_modules():
        network_name = name.replace(".", "_")
        network_layer_mapping[network_name] = module
        module.network_layer_name = network_name
    sd_model.network_layer_mapping = network_layer_mapping


def load_network(name, network_on_disk):
    net = network.Network(name, network_on_disk)
    net.mtime = os.path.getmtime(network_on_disk.filename)
    sd = load_file(network_on_disk.filename)
    sd_model = shared.sd_model
    if not hasattr(sd_model, "network_layer_mapping"):
        assign_network_names_to_compvis_modules(sd_model)
    is_sd2 = "model_transformer_resblocks" in sd_model.network_layer_mapping
    matched = {}
    for key_network, weight in sd.items():
        base, _, part = key_network.partition(".")
        key = convert_diffusers_name_to_compvis(base, is_sd2)
        sd_module = sd_model.network_layer_mapping.get(key)
        if sd_module is None:
            continue
        if key not in matched:
            matched[key] = network.NetworkWeights(key_network, key, {}, sd_module)
        matched[key].w[part] = weight
    for key, weights in matched.items():
        net.modules[key] = network.NetworkModuleLora(net, weights)
    return net


def _lookup(name):
    # the real rule: a forbidden alias only works as a file name
    if name.lower() in forbidden_network_aliases:
        return available_networks.get(name)
    return available_network_aliases.get(name)


def purge_networks_from_memory():
    while (
        len(networks_in_memory) > shared.opts.lora_in_memory_limit and len(networks_in_memory) > 0
    ):
        networks_in_memory.pop(next(iter(networks_in_memory)), None)
    devices.torch_gc()


def load_networks(names, te_multipliers=None, unet_multipliers=None, dyn_dims=None):
    already_loaded = {net.name: net for net in loaded_networks if net.name in names}
    loaded_networks.clear()

    unavailable = [name for name in names if _lookup(name) is None]
    if unavailable:
        update_available_networks_by_names(unavailable)

    networks_on_disk = [_lookup(name) for name in names]
    if any(x is None for x in networks_on_disk):
        list_available_networks()
        networks_on_disk = [_lookup(name) for name in names]

    failed_to_load_networks = []
    for i, (network_on_disk, name) in enumerate(zip(networks_on_disk, names)):
        net = already_loaded.get(name)
        if network_on_disk is not None:
            if net is None:
                net = networks_in_memory.get(name)
            if net is None or os.path.getmtime(network_on_disk.filename) > net.mtime:
                try:
                    net = load_network(name, network_on_disk)
                    networks_in_memory.pop(name, None)
                    networks_in_memory[name] = net
                except Exception as e:
                    errors.display(e, f"loading network {network_on_disk.filename}")
                    continue
            net.mentioned_name = name
            network_on_disk.read_hash()
        if net is None:
            failed_to_load_networks.append(name)
            logging.info(f"Couldn't find network with name {name}")
            continue
        net.te_multiplier = te_multipliers[i] if te_multipliers else 1.0
        net.unet_multiplier = unet_multipliers[i] if unet_multipliers else 1.0
        net.dyn_dim = dyn_dims[i] if dyn_dims else 1.0
        loaded_networks.append(net)

    if failed_to_load_networks:
        not_found_messages.append(f"Lora not found: {', '.join(failed_to_load_networks)}")

    purge_networks_from_memory()


def store_weights_backup(weight):
    if weight is None:
        return None
    return weight.to(devices.cpu, copy=True)


def restore_weights_backup(obj, field, weight):
    if weight is None:
        setattr(obj, field, None)
        return
    getattr(obj, field).copy_(weight)


def network_restore_weights_from_backup(self):
    weights_backup = getattr(self, "network_weights_backup", None)
    bias_backup = getattr(self, "network_bias_backup", None)
    if weights_backup is None and bias_backup is None:
        return
    if weights_backup is not None:
        restore_weights_backup(self, "weight", weights_backup)
    restore_weights_backup(self, "bias", bias_backup)


def network_apply_weights(self):
    """Merge the loaded networks into this layer's weights in place (backing them up first)."""
    network_layer_name = getattr(self, "network_layer_name", None)
    if network_layer_name is None or not hasattr(self, "weight"):
        return
    current_names = getattr(self, "network_current_names", ())
    wanted_names = tuple(
        (x.name, x.te_multiplier, x.unet_multiplier, x.dyn_dim) for x in loaded_networks
    )
    weights_backup = getattr(self, "network_weights_backup", None)
    if weights_backup is None and wanted_names != ():
        if current_names != ():
            raise RuntimeError("no backup weights found and current weights are not unchanged")
        self.network_weights_backup = store_weights_backup(self.weight)
    bias_backup = getattr(self, "network_bias_backup", None)
    if bias_backup is None and wanted_names != ():
        self.network_bias_backup = store_weights_backup(getattr(self, "bias", None))

    if current_names != wanted_names:
        network_restore_weights_from_backup(self)
        for net in loaded_networks:
            module = net.modules.get(network_layer_name)
            if module is None:
                continue
            with torch.no_grad():
                updown, _ = module.calc_updown(self.weight)
                self.weight.copy_((self.weight + updown).to(dtype=self.weight.dtype))
        self.network_current_names = wanted_names


def network_reset_cached_weight(self):
    self.network_current_names = ()
    self.network_weights_backup = None
    self.network_bias_backup = None


def process_network_files(names=None):
    candidates = list(
        shared.walk_files(
            shared.cmd_opts.lora_dir, allowed_extensions=[".pt", ".ckpt", ".safetensors"]
        )
    )
    candidates += list(
        shared.walk_files(
            shared.cmd_opts.lyco_dir_backcompat, allowed_extensions=[".pt", ".ckpt", ".safetensors"]
        )
    )
    for filename in candidates:
        if os.path.isdir(filename):
            continue
        name = os.path.splitext(os.path.basename(filename))[0]
        if names and name not in names:
            continue
        try:
            entry = network.NetworkOnDisk(name, filename)
        except OSError:
            errors.report(f"Failed to load network {name} from {filename}", exc_info=True)
            continue
        available_networks[name] = entry
        if entry.alias in available_network_aliases:
            forbidden_network_aliases[entry.alias.lower()] = 1
        available_network_aliases[name] = entry
        available_network_aliases[entry.alias] = entry


def update_available_networks_by_names(names):
    process_network_files(names)


def list_available_networks():
    available_networks.clear()
    available_network_aliases.clear()
    forbidden_network_aliases.clear()
    available_network_hash_lookup.clear()
    forbidden_network_aliases.update({"none": 1, "Addams": 1})
    os.makedirs(shared.cmd_opts.lora_dir, exist_ok=True)
    process_network_files()


originals = None
extra_network_lora = None

available_networks = {}
available_network_aliases = {}
loaded_networks = []
loaded_bundle_embeddings = {}
networks_in_memory = {}
available_network_hash_lookup = {}
forbidden_network_aliases = {}
not_found_messages = []  # test seam: what the real one appends to model_hijack.comments

list_available_networks()
