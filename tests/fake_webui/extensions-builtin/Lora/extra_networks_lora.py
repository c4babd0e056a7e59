"""Fake of extensions-builtin/Lora/extra_networks_lora.py (A1111 v1.10.1): the `<lora:...>` handler.

Real: `ExtraNetworkLora` ("lora") reads each tag's name (1st positional item), text-encoder
multiplier (2nd positional or te=, default 1), UNet multiplier (3rd positional or unet=,
default the te one) and dyn dim (4th positional or dyn=), adds opts.sd_lora when set, calls
`networks.load_networks(...)`, and records "Lora hashes" (name: shorthash) in
p.extra_generation_params when opts.lora_add_hashes_to_infotext. The extension's
scripts/lora_script.py registers it (and the "lyco" alias) from on_before_ui; here a test
calls `register()`.
"""

from __future__ import annotations

import networks
from modules import extra_networks, shared


class ExtraNetworkLora(extra_networks.ExtraNetwork):
    def __init__(self):
        super().__init__("lora")
        self.errors = {}

    remove_symbols = str.maketrans("", "", ":,")

    def activate(self, p, params_list):
        additional = shared.opts.sd_lora
        self.errors.clear()
        if (
            additional != "None"
            and additional in networks.available_networks
            and not any(x for x in params_list if x.items[0] == additional)
        ):
            multiplier = shared.opts.extra_networks_default_multiplier
            p.all_prompts = [x + f"<lora:{additional}:{multiplier}>" for x in p.all_prompts]
            params_list.append(extra_networks.ExtraNetworkParams(items=[additional, multiplier]))

        names, te_multipliers, unet_multipliers, dyn_dims = [], [], [], []
        for params in params_list:
            assert params.items
            names.append(params.positional[0])
            te = float(params.positional[1]) if len(params.positional) > 1 else 1.0
            te = float(params.named.get("te", te))
            unet = float(params.positional[2]) if len(params.positional) > 2 else te
            unet = float(params.named.get("unet", unet))
            dyn = int(params.positional[3]) if len(params.positional) > 3 else None
            dyn = int(params.named["dyn"]) if "dyn" in params.named else dyn
            te_multipliers.append(te)
            unet_multipliers.append(unet)
            dyn_dims.append(dyn)

        networks.load_networks(names, te_multipliers, unet_multipliers, dyn_dims)

        if shared.opts.lora_add_hashes_to_infotext:
            if not getattr(p, "is_hr_pass", False) or not hasattr(p, "lora_hashes"):
                p.lora_hashes = {}
            for item in networks.loaded_networks:
                if item.network_on_disk.shorthash and item.mentioned_name:
                    name = item.mentioned_name.translate(self.remove_symbols)
                    p.lora_hashes[name] = item.network_on_disk.shorthash
            if p.lora_hashes:
                p.extra_generation_params["Lora hashes"] = ", ".join(
                    f"{k}: {v}" for k, v in p.lora_hashes.items()
                )

    def deactivate(self, p):
        if self.errors:
            p.comment(
                "Networks with errors: " + ", ".join(f"{k} ({v})" for k, v in self.errors.items())
            )
            self.errors.clear()


def register():
    """What lora_script.py's before_ui does for prompts: the handler and its "lyco" alias."""
    networks.extra_network_lora = ExtraNetworkLora()
    extra_networks.register_extra_network(networks.extra_network_lora)
    extra_networks.register_extra_network_alias(networks.extra_network_lora, "lyco")
    return networks.extra_network_lora
