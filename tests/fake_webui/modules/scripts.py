"""Fake of modules/scripts.py (A1111 v1.10.1): the Script API and how scripts are loaded and run.

Real:
- `Script`: `title()`, `show(is_img2img)` (True: in the Script dropdown; AlwaysVisible:
  always shown), `ui(is_img2img)` returns the gradio components whose values are passed to
  `run(p, *args)`, which returns a processing.Processed; `elem_id(item_id)` makes
  "script_txt2img_<title>_<item_id>"; `infotext_fields` (component, infotext key or
  callable) set in ui(); `args_from`/`args_to` locate the script's values;
- `load_scripts()`: imports every scripts/*.py of the WebUI and of each extension by path
  (script_loading.load_module: the module is named after the file, e.g. "xyz_grid.py", and
  is NOT put in sys.modules), with the extension's folder first on sys.path while it loads,
  and records each Script subclass as `ScriptClassData(script_class, path, basedir,
  module)` in `scripts_data` (how extensions find the X/Y/Z plot module);
- `ScriptRunner`: `initialize_scripts(is_img2img)` creates one instance of every script
  per tab (so ui() runs once for txt2img and once for img2img); `setup_ui()` builds the
  "Script" dropdown (type="index"; value 0 = None) and each selectable script's UI inside
  a gr.Group; `run(p, *args)`: args[0] is the dropdown index, the selected script gets
  args[args_from:args_to]; before_process/process/postprocess call the always-on scripts;
  `setup_scrips(p, is_ui)` calls each always-on script's setup(p, *its args), skipping the
  `ScriptBuiltinUI` ones (setup_for_ui_only: the sampler and seed controls of
  modules/processing_scripts) when p.is_api; p runs it once, when both p.scripts and
  p.script_args are set.
Reduced: the root WebUI scripts and extensions are given as a list of (basedir, path);
no callback ordering, no postprocessing scripts, no on-component callbacks. Importing this
module needs gradio only for setup_ui(), so the Forge test profile (no gradio) can run
scripts without a UI.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import sys
from collections import namedtuple

from modules import errors, shared

AlwaysVisible = object()


class Script:
    name = None
    section = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname = None
    group = None
    create_group = True
    infotext_fields = None
    paste_field_names = None
    api_info = None
    on_before_component_elem_id = None
    on_after_component_elem_id = None
    setup_for_ui_only = False
    controls = None

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def describe(self):
        return ""

    def elem_id(self, item_id):
        need_tabname = self.show(True) == self.show(False)
        tabkind = "img2img" if self.is_img2img else "txt2img"
        tabname = f"{tabkind}_" if need_tabname else ""
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))

        return f"script_{tabname}{title}_{item_id}"


class ScriptBuiltinUI(Script):
    # modules/scripts.py: the WebUI's own controls as always-on scripts (sampler, seed...);
    # their setup() copies the UI's values into p, so code-built p skip it (p.is_api)
    setup_for_ui_only = True

    def show(self, is_img2img):
        return AlwaysVisible


current_basedir = os.getcwd()


def basedir():
    return current_basedir


ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data: list[ScriptClassData] = []

scripts_txt2img: ScriptRunner | None = None
scripts_img2img: ScriptRunner | None = None


def load_module(path):
    """modules/script_loading.py load_module: import a file by path, named after the file."""
    module_spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def load_scripts(script_files: list[tuple[str, str]]):
    """Load (basedir, path) script files in order, as the real load_scripts does."""
    global current_basedir, scripts_txt2img, scripts_img2img
    scripts_data.clear()
    syspath = sys.path

    for base, path in script_files:
        scriptfile = ScriptFile(base, os.path.basename(path), path)
        try:
            sys.path = [scriptfile.basedir, *sys.path]
            current_basedir = scriptfile.basedir
            module = load_module(scriptfile.path)
            for script_class in module.__dict__.values():
                if inspect.isclass(script_class) and issubclass(script_class, Script):
                    scripts_data.append(
                        ScriptClassData(script_class, scriptfile.path, scriptfile.basedir, module)
                    )
        except Exception:
            errors.report(f"Error loading script: {scriptfile.filename}", exc_info=True)
        finally:
            sys.path = syspath
            current_basedir = os.getcwd()

    scripts_txt2img = ScriptRunner()
    scripts_img2img = ScriptRunner()


def wrap_call(func, filename, funcname, *args, default=None, **kwargs):
    try:
        return func(*args, **kwargs)
    except Exception:
        errors.report(f"Error calling: {filename}/{funcname}", exc_info=True)

    return default


class ScriptRunner:
    def __init__(self):
        self.scripts = []
        self.selectable_scripts = []
        self.alwayson_scripts = []
        self.titles = []
        self.title_map = {}
        self.infotext_fields = []
        self.paste_field_names = []
        self.inputs = [None]

    def initialize_scripts(self, is_img2img):
        self.scripts.clear()
        self.alwayson_scripts.clear()
        self.selectable_scripts.clear()

        for script_data in scripts_data:
            try:
                script = script_data.script_class()
            except Exception:
                errors.report(
                    f"Error # failed to initialize Script {script_data.module}: ", exc_info=True
                )
                continue

            script.filename = script_data.path
            script.is_txt2img = not is_img2img
            script.is_img2img = is_img2img
            script.tabname = "img2img" if is_img2img else "txt2img"

            visibility = script.show(script.is_img2img)

            if visibility == AlwaysVisible:
                self.scripts.append(script)
                self.alwayson_scripts.append(script)
                script.alwayson = True
            elif visibility:
                self.scripts.append(script)
                self.selectable_scripts.append(script)

    def create_script_ui(self, script):
        script.args_from = len(self.inputs)
        script.args_to = len(self.inputs)

        try:
            self.create_script_ui_inner(script)
        except Exception:
            errors.report(f"Error creating UI for {script.name}: ", exc_info=True)

    def create_script_ui_inner(self, script):
        import modules.api.models as api_models

        controls = wrap_call(script.ui, script.filename, "ui", script.is_img2img)
        script.controls = controls

        if controls is None:
            return

        script.name = wrap_call(
            script.title, script.filename, "title", default=script.filename
        ).lower()

        api_args = []

        for control in controls:
            control.custom_script_source = os.path.basename(script.filename)

            arg_info = api_models.ScriptArg(label=control.label or "")

            for field in ("value", "minimum", "maximum", "step"):
                v = getattr(control, field, None)
                if v is not None:
                    setattr(arg_info, field, v)

            choices = getattr(control, "choices", None)
            if choices is not None:
                arg_info.choices = [x[0] if isinstance(x, tuple) else x for x in choices]

            api_args.append(arg_info)

        script.api_info = api_models.ScriptInfo(
            name=script.name,
            is_img2img=script.is_img2img,
            is_alwayson=script.alwayson,
            args=api_args,
        )

        if script.infotext_fields is not None:
            self.infotext_fields += script.infotext_fields

        if script.paste_field_names is not None:
            self.paste_field_names += script.paste_field_names

        self.inputs += controls
        script.args_to = len(self.inputs)

    def setup_ui_for_section(self, section, scriptlist=None):
        import gradio as gr

        if scriptlist is None:
            scriptlist = self.alwayson_scripts

        for script in scriptlist:
            if script.alwayson and script.section != section:
                continue

            if script.create_group:
                with gr.Group(visible=script.alwayson) as group:
                    self.create_script_ui(script)

                script.group = group
            else:
                self.create_script_ui(script)

    def prepare_ui(self):
        self.inputs = [None]

    def setup_ui(self):
        import gradio as gr

        all_titles = [
            wrap_call(script.title, script.filename, "title") or script.filename
            for script in self.scripts
        ]
        self.title_map = {title.lower(): script for title, script in zip(all_titles, self.scripts)}
        self.titles = [
            wrap_call(script.title, script.filename, "title") or f"{script.filename} [error]"
            for script in self.selectable_scripts
        ]

        self.setup_ui_for_section(None)

        dropdown = gr.Dropdown(
            label="Script",
            elem_id="script_list",
            choices=["None", *self.titles],
            value="None",
            type="index",
        )
        self.inputs[0] = dropdown

        self.setup_ui_for_section(None, self.selectable_scripts)

        def select_script(script_index):
            if script_index is None:
                script_index = 0
            selected_script = (
                self.selectable_scripts[script_index - 1] if script_index > 0 else None
            )

            return [gr.update(visible=selected_script == s) for s in self.selectable_scripts]

        dropdown.change(
            fn=select_script,
            inputs=[dropdown],
            outputs=[script.group for script in self.selectable_scripts],
        )

        self.infotext_fields.append((dropdown, lambda x: gr.update(value=x.get("Script", "None"))))

        return self.inputs

    def run(self, p, *args):
        script_index = args[0]

        if script_index == 0 or script_index is None:
            return None

        script = self.selectable_scripts[script_index - 1]

        if script is None:
            return None

        script_args = args[script.args_from : script.args_to]
        processed = script.run(p, *script_args)

        shared.total_tqdm.clear()

        return processed

    def _alwayson(self, method, p, *extra):
        for script in self.alwayson_scripts:
            try:
                script_args = p.script_args[script.args_from : script.args_to]
                getattr(script, method)(p, *extra, *script_args)
            except Exception:
                errors.report(f"Error running {method}: {script.filename}", exc_info=True)

    def setup_scrips(self, p, *, is_ui=True):
        # (sic) the real name; called once by p.setup_scripts(), skipping UI-only setups for API p
        for script in self.alwayson_scripts:
            if not is_ui and script.setup_for_ui_only:
                continue
            try:
                script_args = p.script_args[script.args_from : script.args_to]
                script.setup(p, *script_args)
            except Exception:
                errors.report(f"Error running setup: {script.filename}", exc_info=True)

    def before_process(self, p):
        self._alwayson("before_process", p)

    def process(self, p):
        self._alwayson("process", p)

    def postprocess(self, p, processed):
        self._alwayson("postprocess", p, processed)
