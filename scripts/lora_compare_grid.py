"""A1111 entry point: the "LoRA comparison grid" Script and the X/Y/Z plot's LoRA axes.

Logic lives in lora_trainer.webui.grid (the script) and lora_trainer.webui.grid_xyz (the axes).
"""

import modules.scripts as scripts
from modules import script_callbacks

from lora_trainer.webui import grid
from lora_trainer.webui.grid_xyz import register_xyz_axes


class Script(scripts.Script):
    def title(self):
        return grid.TITLE

    def show(self, is_img2img):
        return True

    def ui(self, is_img2img):
        return grid.ui(self, is_img2img)

    def run(self, p, *args):
        return grid.run(p, *args)


# the X/Y/Z plot reads its axis options when its UI is built, after all scripts are loaded
script_callbacks.on_before_ui(register_xyz_axes)
