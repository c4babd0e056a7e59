"""Fake of modules/api/api.py (A1111 v1.10.1): how /sdapi/v1/txt2img runs a selectable script.

Real:
- at start-up `Api.__init__` makes sure the UI was built (ui.create_ui(), which calls
  every script's ui() for txt2img and for img2img) and then `init_default_script_args`
  calls each script's ui() twice more inside `with gr.Blocks():` and keeps the components'
  `.value`s as the default script_args;
- `text2imgapi(req)`: `script_name` is found by title, case-insensitive, among the
  selectable scripts (HTTP 422 "Script '...' not found" otherwise); `init_script_args`
  copies the defaults and puts `req.script_args` at the script's args_from:args_to (a
  slice assignment, so a shorter list shifts what follows) and its index + 1 at 0; the
  sampler name is split from a schedule type (get_sampler_and_scheduler) and must exist
  (HTTP 400 "Sampler not found"); a StableDiffusionProcessingTxt2Img is made from the
  request (do_not_save_samples/grid = not save_images), with p.is_api, p.scripts,
  p.outpath_grids/samples from opts; it runs under shared.state.begin()/end(); the reply
  is {"images": base64 PNGs of processed.images, "parameters": the request, "info":
  processed.js()};
- an exception becomes HTTP 500 with {"error": type name, "detail": "", "body": "",
  "errors": str(e)} (api_middleware's handle_exception).
Reduced: the request is a dict with the API field names, the reply a (status, json) pair;
img2img, alwayson_scripts and infotext requests are left out.
"""

from __future__ import annotations

import base64
import io

from modules import processing, scripts, sd_samplers, shared
from modules.shared import opts


class HTTPException(Exception):
    def __init__(self, status_code, detail=None):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def script_name_to_index(name, scripts_list):
    try:
        return [script.title().lower() for script in scripts_list].index(name.lower())
    except Exception as e:
        raise HTTPException(status_code=422, detail=f"Script '{name}' not found") from e


def validate_sampler_name(name):
    config = sd_samplers.all_samplers_map.get(name, None)
    if config is None:
        raise HTTPException(status_code=400, detail="Sampler not found")
    return name


def encode_pil_to_base64(image):
    with io.BytesIO() as output_bytes:
        image.save(output_bytes, format="PNG")
        return base64.b64encode(output_bytes.getvalue()).decode()


class Api:
    def __init__(self):
        import gradio as gr

        self.default_script_arg_txt2img = []
        for runner, is_img2img in (
            (scripts.scripts_txt2img, False),
            (scripts.scripts_img2img, True),
        ):
            if not runner.scripts:
                runner.initialize_scripts(is_img2img)
                with gr.Blocks():
                    runner.setup_ui()
        self.default_script_arg_txt2img = self.init_default_script_args(scripts.scripts_txt2img)

    def get_selectable_script(self, script_name, script_runner):
        if script_name is None or script_name == "":
            return None, None

        script_idx = script_name_to_index(script_name, script_runner.selectable_scripts)
        script = script_runner.selectable_scripts[script_idx]
        return script, script_idx

    def init_default_script_args(self, script_runner):
        import gradio as gr

        last_arg_index = 1
        for script in script_runner.scripts:
            if last_arg_index < script.args_to:
                last_arg_index = script.args_to
        script_args = [None] * last_arg_index
        script_args[0] = 0

        with gr.Blocks():
            for script in script_runner.scripts:
                if script.ui(script.is_img2img):
                    ui_default_values = []
                    for elem in script.ui(script.is_img2img):
                        ui_default_values.append(elem.value)
                    script_args[script.args_from : script.args_to] = ui_default_values
        return script_args

    def init_script_args(
        self, request, default_script_args, selectable_scripts, selectable_idx, script_runner
    ):
        script_args = default_script_args.copy()
        if selectable_scripts:
            script_args[selectable_scripts.args_from : selectable_scripts.args_to] = request.get(
                "script_args", []
            )
            script_args[0] = selectable_idx + 1
        return script_args

    def text2imgapi(self, txt2imgreq: dict):
        """(status, json) as the HTTP client would see them."""
        try:
            return 200, self._text2img(dict(txt2imgreq))
        except HTTPException as e:
            return e.status_code, {"detail": e.detail}
        except Exception as e:
            return 500, {"error": type(e).__name__, "detail": "", "body": "", "errors": str(e)}

    def _text2img(self, req):
        script_runner = scripts.scripts_txt2img
        selectable_scripts, selectable_script_idx = self.get_selectable_script(
            req.get("script_name"), script_runner
        )
        sampler, scheduler = sd_samplers.get_sampler_and_scheduler(
            req.get("sampler_name"), req.get("scheduler")
        )
        args = {
            k: v
            for k, v in req.items()
            if k
            not in ("script_name", "script_args", "alwayson_scripts", "send_images", "save_images")
        }
        args["sampler_name"] = validate_sampler_name(sampler)
        if not args.get("scheduler") and scheduler != "Automatic":
            args["scheduler"] = scheduler
        args["do_not_save_samples"] = not req.get("save_images", False)
        args["do_not_save_grid"] = not req.get("save_images", False)

        script_args = self.init_script_args(
            req,
            self.default_script_arg_txt2img,
            selectable_scripts,
            selectable_script_idx,
            script_runner,
        )

        p = processing.StableDiffusionProcessingTxt2Img(sd_model=shared.sd_model, **args)
        p.is_api = True
        p.scripts = script_runner
        p.outpath_grids = opts.outdir_txt2img_grids
        p.outpath_samples = opts.outdir_txt2img_samples
        try:
            shared.state.begin(job="scripts_txt2img")
            if selectable_scripts is not None:
                p.script_args = script_args
                processed = scripts.scripts_txt2img.run(p, *p.script_args)
            else:
                p.script_args = tuple(script_args)
                processed = processing.process_images(p)
        finally:
            shared.state.end()
            shared.total_tqdm.clear()
            p.close()

        images = (
            list(map(encode_pil_to_base64, processed.images))
            if req.get("send_images", True)
            else []
        )
        return {"images": images, "parameters": req, "info": processed.js()}
