"""The LoRA comparison grid inside a (fake) A1111 v1.10.1: run, progress, interrupt, errors, API."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
FAKE_WEBUI = ROOT / "tests" / "fake_webui"
SAMPLERS = ["Euler", "Euler a", "DPM++ 2M", "DPM++ SDE"]
SCHEDULES = ["Automatic", "Automatic", "Karras", "Karras"]


@pytest.fixture()
def webui(monkeypatch, tmp_path, fixtures):
    monkeypatch.syspath_prepend(str(FAKE_WEBUI / "extensions-builtin" / "Lora"))
    monkeypatch.syspath_prepend(str(FAKE_WEBUI))
    stale = ("modules", "network", "networks")
    for name in [
        m for m in sys.modules if m in stale or m.startswith(("modules.", "lora_trainer.webui"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    from modules import images, processing, scripts, shared

    lora_dir = tmp_path / "Lora"
    lora_dir.mkdir()
    shared.cmd_opts.lora_dir = str(lora_dir)
    shared.cmd_opts.lyco_dir_backcompat = str(tmp_path / "LyCORIS")
    shared.sd_model = SimpleNamespace(
        sd_checkpoint_info=SimpleNamespace(name_for_extra="tiny-sd1"), sd_model_hash="4c9fedc4b7"
    )
    import networks  # the Lora extension scans the folder on import, as the real one does

    def add_lora(
        relative: str, output_name: str | None = None, epoch: int = 1, card: dict | None = None
    ):
        # the kohya fixture file, with the metadata our trainer writes (epoch files keep
        # the LoRA's ss_output_name, so its alias is shared)
        path = lora_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        source = fixtures / "tiny-sd1-lora.safetensors"
        with safe_open(source, "pt") as f:
            metadata = dict(f.metadata() or {})
        metadata.update(ss_output_name=output_name or path.stem, ss_epoch=str(epoch))
        metadata["sshs_model_hash"] = f"{abs(hash(relative)):064x}"[:64]
        save_file(load_file(source), str(path), metadata=metadata)
        if card is not None:
            path.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
        return path

    def make_p(**settings):
        values = dict(
            prompt="a photo of a toy",
            negative_prompt="blurry",
            seed=-1,
            sampler_name="Euler",
            scheduler="Automatic",
            steps=20,
            cfg_scale=7.0,
            width=64,
            height=64,
            outpath_samples=str(tmp_path / "out" / "samples"),
            outpath_grids=str(tmp_path / "out" / "grids"),
        )
        values.update(settings)
        p = processing.StableDiffusionProcessingTxt2Img(**values)
        p.scripts = scripts.ScriptRunner()  # as in the UI: processing keeps the tags in infotext
        return p

    return SimpleNamespace(
        shared=shared,
        state=shared.state,
        processing=processing,
        images=images,
        scripts=scripts,
        networks=networks,
        lora_dir=lora_dir,
        add_lora=add_lora,
        make_p=make_p,
        tmp=tmp_path,
    )


def grid_args(**changes):
    from lora_trainer.webui.grid_request import DEFAULT_AXIS_VALUES, AxisKind, GridRequest

    request = GridRequest(loras=("mine",), y_values=DEFAULT_AXIS_VALUES[AxisKind.SAMPLER])
    values = {**{f: getattr(request, f) for f in request.__dataclass_fields__}, **changes}
    return GridRequest(**values).to_args()


def run_grid(webui, p, **changes):
    from lora_trainer.webui import grid

    return grid.run(p, *grid_args(**changes))


def load_scripts(webui):
    webui.scripts.load_scripts(
        [
            (str(FAKE_WEBUI), str(FAKE_WEBUI / "scripts" / "xyz_grid.py")),
            (str(ROOT), str(ROOT / "scripts" / "lora_compare_grid.py")),
        ]
    )


def xyz_plot(webui):
    """The fake X/Y/Z plot script with our axes registered, ready to run: (plot, axis labels)."""
    webui.networks.list_available_networks()
    load_scripts(webui)
    from modules import script_callbacks

    script_callbacks.before_ui_callback()
    xyz_data = next(
        d for d in webui.scripts.scripts_data if d.script_class.__module__ == "xyz_grid.py"
    )
    plot = xyz_data.script_class()
    plot.current_axis_options = xyz_data.module.axis_options  # what ui() sets
    return plot, [o.label for o in xyz_data.module.axis_options]


def test_weights_by_samplers(webui):
    webui.add_lora("mine.safetensors")
    webui.networks.list_available_networks()
    p = webui.make_p()
    res = run_grid(webui, p)

    calls = webui.processing.calls
    assert len(calls) == 5 * 4
    weights = ["", " <lora:mine:0.25>", " <lora:mine:0.5>", " <lora:mine:0.75>", " <lora:mine:1>"]
    for i, call in enumerate(calls):
        row, col = divmod(i, 5)
        assert call["prompt"] == "a photo of a toy" + weights[col]
        assert (call["sampler_name"], call["scheduler"]) == (SAMPLERS[row], SCHEDULES[row])
        assert (call["steps"], call["cfg_scale"]) == (20, 7.0)
        assert call["negative_prompt"] == "blurry"
    seeds = {c["seed"] for c in calls}
    assert len(seeds) == 1 and seeds != {-1} and p.seed in seeds

    # the grid first (cells + caption, header and row-label bands), then the 20 cells
    assert len(res.images) == 21 and res.index_of_first_image == 1
    assert res.images[0].size == (72 + 5 * 64, 42 + 42 + 4 * 64)
    assert all(im.size == (64, 64) for im in res.images[1:])
    assert res.images[1].getpixel((0, 0)) != res.images[2].getpixel((0, 0))
    # each cell sits in the grid where the layout puts it
    assert res.images[0].getpixel((72 + 3 * 64 + 5, 84 + 2 * 64 + 5)) == res.images[
        1 + 13
    ].getpixel((5, 5))
    assert "Lora hashes" not in res.infotexts[0]
    assert "<lora:mine:0.75>" in res.infotexts[4] and f"Seed: {p.seed}" in res.infotexts[4]
    assert "Euler a, DPM++ SDE add fresh noise at every step" in res.comments

    state = webui.state
    assert (state.job_count, state.job_no) == (20, 20)
    assert state.job == "LoRA grid: image 20 of 20"
    assert webui.shared.total_tqdm.total == 20 * 20


def test_grid_and_cells_are_saved_with_their_infotext(webui):
    webui.add_lora("mine.safetensors")
    p = webui.make_p(seed=1234)
    res = run_grid(webui, p, weights="0, 1", y_type="Steps", y_values="10, 30")

    saved = webui.images.saved
    grids = [s for s in saved if s["grid"]]
    cells = [s for s in saved if not s["grid"]]
    assert len(grids) == 1 and len(cells) == 4
    grid_file = Path(grids[0]["path"])
    assert grid_file.name.startswith("lora_grid-") and grid_file.suffix == ".png"
    info = Image.open(grid_file).info["parameters"]
    assert info == res.infotexts[0] == res.images[0].info["parameters"]
    assert info.startswith("a photo of a toy\nNegative prompt: blurry\nSteps: 20, Sampler: Euler")
    for part in (
        "Seed: 1234",
        "Script: LoRA comparison grid",
        "LoRA grid LoRAs: mine",
        'LoRA grid weights: "0, 1"',
        "LoRA grid Y type: Steps",
        'LoRA grid Y values: "10, 30"',
    ):
        assert part in info
    cell_info = Image.open(cells[3]["path"]).info["parameters"]
    assert cell_info.startswith(
        "a photo of a toy <lora:mine:1>\nNegative prompt: blurry\nSteps: 30"
    )
    assert "Seed: 1234" in cell_info


def test_grid_infotext_pastes_back_into_the_script(webui):
    pytest.importorskip(
        "gradio", reason="the A1111 profile has gradio 3.41; Forge's profile has none"
    )
    import gradio as gr
    from modules import infotext_utils

    webui.add_lora("mine.safetensors")
    load_scripts(webui)
    runner = webui.scripts.scripts_txt2img
    runner.initialize_scripts(False)
    with gr.Blocks():
        runner.setup_ui()
    args = grid_args(
        weights="0-1 [3]",
        y_type="CFG scale",
        y_values="3, 9",
        z_type="Steps",
        z_values="5",
        activation_text=True,
        margin=4,
    )
    res = run_grid(webui, webui.make_p(), **dict(zip(_fields(), args)))
    params = infotext_utils.parse_generation_parameters(res.infotexts[0])
    restored = {}
    for component, key in runner.infotext_fields:
        value = key(params) if callable(key) else params.get(key)
        if component in runner.inputs and value is not None:
            restored[runner.inputs.index(component)] = value["value"]
    script = next(s for s in runner.selectable_scripts if s.title() == "LoRA comparison grid")
    assert restored[0] == "LoRA comparison grid"
    pasted = [restored.get(i) for i in range(script.args_from, script.args_to)]
    expected = list(args)
    expected[7] = None  # "allow more than 100 images" is never pasted: a paste must not confirm it
    assert pasted == expected


def _fields():
    from lora_trainer.webui.grid_request import GridRequest

    return list(GridRequest.__dataclass_fields__)


def test_interrupt_after_k_cells_returns_them(webui):
    webui.add_lora("mine.safetensors")
    k = 7

    def press_interrupt(p):
        if len(webui.processing.calls) == k + 1:
            webui.state.interrupt()  # during the (k+1)-th image

    webui.processing.on_sample = press_interrupt
    res = run_grid(webui, webui.make_p())

    assert len(webui.processing.calls) == k + 1
    assert len(res.images) == 1 + k and res.index_of_first_image == 1
    assert [im.getpixel((0, 0)) for im in res.images[1:]] == [
        Image.open(s["path"]).getpixel((0, 0)) for s in webui.images.saved
    ]
    assert not any(s["grid"] for s in webui.images.saved)  # an incomplete grid is not saved
    assert "Stopped: 7 of 20 cells are done." in res.comments
    grid = res.images[0]
    assert grid.size == (392, 340)
    empty = grid.getpixel((72 + 4 * 64 + 2, 84 + 3 * 64 + 2))
    assert empty == (255, 255, 255)  # unrendered cells are background with a grey note


def test_interrupt_before_the_first_cell_returns_nothing(webui):
    webui.add_lora("mine.safetensors")
    webui.state.interrupt()
    res = run_grid(webui, webui.make_p())
    assert res.images == [] and webui.processing.calls == []


def test_skip_drops_one_cell_and_goes_on(webui):
    webui.add_lora("mine.safetensors")

    def press_skip(p):
        if len(webui.processing.calls) == 3:
            webui.state.skip()

    webui.processing.on_sample = press_skip
    res = run_grid(webui, webui.make_p(), y_type="Nothing")
    assert len(webui.processing.calls) == 5
    assert len(res.images) == 1 + 4 and not webui.state.skipped
    assert "1 cells were skipped." in res.comments
    assert res.images[0].size == (5 * 64, 84 + 64)  # no row axis: no left band


def test_stop_generating_finishes_the_current_cell(webui):
    webui.add_lora("mine.safetensors")

    def press_stop(p):
        if len(webui.processing.calls) == 2:
            webui.state.stop_generating()

    webui.processing.on_sample = press_stop
    res = run_grid(webui, webui.make_p())
    assert len(webui.processing.calls) == 2 and len(res.images) == 1 + 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"y_values": "Euler, Eulr"}, "unknown sampler `Eulr`"),
        ({"loras": ["missing"]}, "LoRA not found: missing"),
        ({"weights": ""}, "Weights is empty"),
        ({"weights": "1-"}, "`1-` is not a number or a range"),
        ({"weights": "0-1 [26]"}, "this grid makes 104 images, more than 100"),
        ({"loras": []}, "no LoRA picked"),
        ({"y_type": "Epoch", "y_values": "2"}, "no file for epoch 2"),
        ({"margin": "wide"}, r"script_args\[8\] \(margin\)"),
    ],
)
def test_bad_input_is_reported_before_any_image(webui, changes, message):
    from lora_trainer.webui.grid_values import GridError

    webui.add_lora("mine.safetensors")
    with pytest.raises(GridError, match=message):
        run_grid(webui, webui.make_p(), **changes)
    assert webui.processing.calls == [] and webui.images.saved == []


def test_the_webui_shows_a_grid_error_as_its_message(webui):
    from modules import call_queue

    from lora_trainer.webui import grid

    webui.add_lora("mine.safetensors")

    def txt2img():  # what modules/txt2img.py does with the selected script
        processed = grid.run(webui.make_p(), *grid_args(y_values="Eulr"))
        return processed.images, processed.js(), "", ""

    outputs = call_queue.wrap_gradio_call(txt2img, extra_outputs=[None, "", ""])()
    assert outputs[-1].startswith("<div class='error'>GridError: unknown sampler `Eulr`")
    assert "did you mean `Euler`" in outputs[-1]


def test_many_images_need_the_confirmation_and_fit_the_size_limit(webui):
    webui.add_lora("mine.safetensors")
    res = run_grid(
        webui, webui.make_p(), weights="0-1 [26]", allow_many=True, y_values="Euler, Heun"
    )
    assert len(webui.processing.calls) == 52 and len(res.images) == 53
    webui.shared.opts.img_max_size_mp = 0.1
    from lora_trainer.webui.grid_values import GridError

    with pytest.raises(GridError, match=r"megapixels, the WebUI's limit is 0\.1"):
        run_grid(webui, webui.make_p(), weights="0-1 [26]", allow_many=True)


def test_epochs_of_a_trained_lora(webui):
    webui.add_lora("mine.safetensors", epoch=3)
    webui.add_lora("mine_epochs/mine-000001.safetensors", output_name="mine", epoch=1)
    webui.networks.list_available_networks()
    webui.add_lora(
        "mine_epochs/mine-000002.safetensors", output_name="mine", epoch=2
    )  # not listed yet
    p = webui.make_p(prompt="a toy <lora:mine:0.8>")
    res = run_grid(webui, p, weights="0, 1", y_type="Epoch", y_values="")

    prompts = [c["prompt"] for c in webui.processing.calls]
    assert prompts == [
        "a toy ",  # weight 0: the same image for every epoch, made once
        "a toy <lora:mine-000001:1>",
        "a toy <lora:mine-000002:1>",
        "a toy <lora:mine:1>",
    ]
    assert len(res.images) == 1 + 6 and res.images[1] is res.images[3] is res.images[5]
    assert "so 4 images were generated for 6 cells" in res.comments
    # the Lora extension resolves every name to the right file (epoch files share the
    # alias "mine", so "mine" is only a file name: networks.py load_networks' rule)
    networks = webui.networks
    for name, relative in [
        ("mine", "mine"),
        ("mine-000001", "mine_epochs/mine-000001"),
        ("mine-000002", "mine_epochs/mine-000002"),
    ]:
        forbidden = name.lower() in networks.forbidden_network_aliases
        entry = (
            networks.available_networks if forbidden else networks.available_network_aliases
        ).get(name)
        assert Path(entry.filename) == webui.lora_dir / f"{relative}.safetensors"


def test_activation_text_from_the_lora_card(webui):
    webui.add_lora("mine.safetensors", card={"activation text": "sks toy", "preferred weight": 0.7})
    run_grid(
        webui,
        webui.make_p(prompt="a photo"),
        weights="0, 1",
        y_type="Nothing",
        activation_text=True,
    )
    assert [c["prompt"] for c in webui.processing.calls] == [
        "a photo, sks toy",
        "a photo, sks toy <lora:mine:1>",
    ]


def test_hires_prompt_and_img2img(webui):
    webui.add_lora("mine.safetensors")
    p = webui.make_p(enable_hr=True, hr_scale=1.5, hr_prompt="sharp toy")
    res = run_grid(webui, p, weights="0.5", y_type="Nothing")
    assert webui.processing.calls[0]["hr_prompt"] == "sharp toy <lora:mine:0.5>"
    assert res.images[1].size == (96, 96)

    from modules import processing

    p = processing.StableDiffusionProcessingImg2Img(
        prompt="a toy", init_images=[Image.new("RGB", (64, 64), "red")], width=64, height=64,
        sampler_name="Euler", steps=10, outpath_samples=str(webui.tmp / "i2i"), outpath_grids=str(webui.tmp / "i2i"),
    )  # fmt: skip
    res = run_grid(webui, p, weights="0, 1", y_type="Sampler", y_values="Euler, DDIM")
    assert [c["sampler_name"] for c in webui.processing.calls[1:]] == [
        "Euler",
        "Euler",
        "DDIM",
        "DDIM",
    ]
    assert "Denoising strength: 0.75" in res.infotexts[1]


def test_api_txt2img_returns_the_grid_then_the_cells(webui):
    pytest.importorskip(
        "gradio", reason="the A1111 profile has gradio 3.41; Forge's profile has none"
    )
    from modules.api import api

    webui.add_lora("mine.safetensors")
    load_scripts(webui)
    server = api.Api()  # builds both tabs, then asks every script's ui() twice for defaults
    script = next(
        s
        for s in webui.scripts.scripts_txt2img.selectable_scripts
        if s.title() == "LoRA comparison grid"
    )
    defaults = server.default_script_arg_txt2img[script.args_from : script.args_to]
    assert defaults == grid_args(loras=[])
    assert [a.label for a in script.api_info.args][:3] == ["LoRAs", "LoRA weights", "Second axis"]

    request = {
        "prompt": "a toy",
        "seed": 42,
        "steps": 12,
        "width": 64,
        "height": 64,
        "sampler_name": "Euler",
        "script_name": "lora comparison grid",
        "script_args": [["mine"], "0, 1", "CFG scale", "4, 8", "Nothing", "", False, False, 0],
    }
    status, reply = server.text2imgapi(request)
    assert status == 200
    info = json.loads(reply["info"])
    assert len(reply["images"]) == 1 + 4 and info["index_of_first_image"] == 1
    assert "Script: LoRA comparison grid" in info["infotexts"][0]
    assert info["all_seeds"] == [42] * 5
    first = Image.open(io.BytesIO(base64.b64decode(reply["images"][0])))
    assert first.size == (72 + 2 * 64, 84 + 2 * 64)
    assert [(c["cfg_scale"], c["prompt"]) for c in webui.processing.calls] == [
        (4.0, "a toy"), (4.0, "a toy <lora:mine:1>"), (8.0, "a toy"), (8.0, "a toy <lora:mine:1>"),
    ]  # fmt: skip
    assert webui.images.saved == []  # save_images defaults to false in the API

    request["script_args"] = [["mine"], "1-", "Nothing", "", "Nothing", "", False, False, 0]
    status, reply = server.text2imgapi(request)
    assert status == 500 and reply["error"] == "GridError"
    assert "`1-` is not a number or a range" in reply["errors"]


def test_ui_builds_for_both_tabs_and_again_for_the_api(webui):
    gr = pytest.importorskip(
        "gradio", reason="the A1111 profile has gradio 3.41; Forge's profile has none"
    )
    webui.add_lora("mine.safetensors")
    webui.add_lora("mine-000001.safetensors", output_name="mine")
    webui.add_lora("sub/other.safetensors")
    webui.networks.list_available_networks()
    load_scripts(webui)
    from lora_trainer.webui import grid

    for runner, is_img2img in (
        (webui.scripts.scripts_txt2img, False),
        (webui.scripts.scripts_img2img, True),
    ):
        runner.initialize_scripts(is_img2img)
        with gr.Blocks():
            runner.setup_ui()
        script = next(s for s in runner.selectable_scripts if s.title() == grid.TITLE)
        assert script.args_to - script.args_from == 9
        controls = runner.inputs[script.args_from : script.args_to]
        assert controls[0].choices in (["mine", "other"], [("mine", "mine"), ("other", "other")])
        assert (
            controls[0].elem_id
            == f"script_{'img2img' if is_img2img else 'txt2img'}_lora_comparison_grid_loras"
        )
        with gr.Blocks():  # the API's init_default_script_args: twice more, same instance
            again = [c.value for c in script.ui(is_img2img)]
            assert again == [c.value for c in script.ui(is_img2img)] == [c.value for c in controls]
    from modules import errors

    assert errors.reported == []


def test_summary_and_axis_defaults_in_the_ui(webui):
    pytest.importorskip(
        "gradio", reason="the A1111 profile has gradio 3.41; Forge's profile has none"
    )
    from lora_trainer.webui.grid_ui import summary_html, values_for_type

    webui.add_lora("mine.safetensors")
    webui.networks.list_available_networks()
    assert "5 weights x 4 samplers = 20 images" in summary_html(*grid_args())
    assert "saved epochs" not in summary_html(*grid_args())
    webui.add_lora("mine-000001.safetensors", output_name="mine")
    assert "mine has 1 saved epoch: set an axis to Epoch" in summary_html(*grid_args())
    assert "5 weights x 2 epochs = 10 images" in summary_html(
        *grid_args(y_type="Epoch", y_values="")
    )
    assert "To fix: unknown sampler `Eulr`" in summary_html(*grid_args(y_values="Eulr"))
    assert (
        values_for_type("Steps", "Euler, Euler a, DPM++ 2M Karras, DPM++ SDE Karras")["value"]
        == "15, 25, 35"
    )
    assert values_for_type("Steps", "Euler, Heun")["value"] == "Euler, Heun"  # edited: kept


def test_xyz_plot_gets_the_lora_axes(webui):
    webui.add_lora("mine.safetensors")
    webui.add_lora("mine-000002.safetensors", output_name="mine")
    webui.add_lora("other.safetensors")
    webui.networks.list_available_networks()
    load_scripts(webui)
    from modules import script_callbacks

    script_callbacks.before_ui_callback()
    script_callbacks.before_ui_callback()  # a UI reload: no duplicates
    assert not script_callbacks.reported_errors
    xyz = next(
        d.module for d in webui.scripts.scripts_data if d.script_class.__module__ == "xyz_grid.py"
    )
    labels = [o.label for o in xyz.axis_options]
    assert [labels.count(x) for x in ("[LoRA] name", "[LoRA] weight", "[LoRA] epoch")] == [1, 1, 1]
    options = {o.label: o for o in xyz.axis_options}

    p = webui.make_p(prompt="a toy <lora:mine:0.8>, grass")
    options["[LoRA] weight"].apply(p, 0.5, [0.0, 0.5])
    assert p.prompt == "a toy <lora:mine:0.5>, grass"
    options["[LoRA] epoch"].apply(p, "2", ["2", "final"])
    assert p.prompt == "a toy <lora:mine-000002:0.5>, grass"
    options["[LoRA] weight"].apply(p, 0.0, [0.0, 0.5])
    assert p.prompt == "a toy , grass"
    q = webui.make_p(prompt="a toy")
    options["[LoRA] name"].apply(q, "other", ["mine", "other"])
    assert q.prompt == "a toy <lora:other:1>"
    assert options["[LoRA] name"].choices() == ["mine", "other"]


def test_xyz_plot_runs_with_the_lora_axes(webui):
    webui.add_lora("mine.safetensors")
    webui.add_lora("mine-000002.safetensors", output_name="mine")
    plot, labels = xyz_plot(webui)
    x, y = labels.index("[LoRA] weight"), labels.index("[LoRA] epoch")
    p = webui.make_p(prompt="a toy <lora:mine:1>")
    res = plot.run(p, x, "0-1 [3]", [], y, "2, final", [], 0, "", [], True)
    assert [c["prompt"] for c in webui.processing.calls] == [
        "a toy ", "a toy <lora:mine-000002:0.5>", "a toy <lora:mine-000002:1>",
        "a toy ", "a toy <lora:mine:0.5>", "a toy <lora:mine:1>",
    ]  # fmt: skip
    assert len(res.images) == 1 + 6
    from lora_trainer.webui.grid_values import GridError

    with pytest.raises(GridError, match="mine has no file for epoch 5"):
        plot.run(
            webui.make_p(prompt="a toy <lora:mine:1>"), x, "1", [], y, "5", [], 0, "", [], True
        )


def test_grid_job_for_a_finished_run(webui):
    from lora_trainer.webui.grid import (
        EPOCHS_FOLDER_SUFFIX,
        epochs_folder,
        grid_job_for_run,
        run_grid_job,
    )

    final = webui.add_lora("mine.safetensors", epoch=4)
    assert epochs_folder(final) == webui.lora_dir / f"mine{EPOCHS_FOLDER_SUFFIX}"
    for epoch in (2,):
        webui.add_lora(
            f"mine{EPOCHS_FOLDER_SUFFIX}/mine-{epoch:06d}.safetensors",
            output_name="mine",
            epoch=epoch,
        )
    sample = {"prompt": "sks toy on a table", "negative_prompt": "lowres", "seed": 7, "sample_steps": 9,
              "scale": 5.0, "width": 64, "height": 64, "sample_sampler": "euler_a"}  # fmt: skip
    job = grid_job_for_run(final, sample)
    assert (job.request.y_type, job.request.loras) == ("Epoch", ("mine",))
    assert job.settings["sampler_name"] == "Euler a" and job.settings["seed"] == 7
    webui.shared.opts.outdir_txt2img_grids = str(webui.tmp / "grids")
    webui.shared.opts.outdir_txt2img_samples = str(webui.tmp / "samples")
    res = run_grid_job(job)
    calls = webui.processing.calls
    assert [c["prompt"] for c in calls] == [
        "sks toy on a table",
        "sks toy on a table <lora:mine-000002:0.25>",
        "sks toy on a table <lora:mine-000002:0.5>",
        "sks toy on a table <lora:mine-000002:0.75>",
        "sks toy on a table <lora:mine-000002:1>",
        "sks toy on a table <lora:mine:0.25>",
        "sks toy on a table <lora:mine:0.5>",
        "sks toy on a table <lora:mine:0.75>",
        "sks toy on a table <lora:mine:1>",
    ]
    assert {
        (c["seed"], c["steps"], c["cfg_scale"], c["sampler_name"], c["negative_prompt"])
        for c in calls
    } == {(7, 9, 5.0, "Euler a", "lowres")}
    assert len(res.images) == 1 + 10 and any(s["grid"] for s in webui.images.saved)
    # without epoch files the grid is the weights alone
    lone = webui.add_lora("lone.safetensors")
    assert grid_job_for_run(lone, {"prompt": "x"}).request.y_type == "Nothing"
    assert (
        grid_job_for_run(lone, {"prompt": "x"}).settings["sampler_name"] == "DDIM"
    )  # kohya's default


def test_xyz_weight_axis_takes_te_unet_pairs(webui):
    webui.add_lora("mine.safetensors")
    plot, labels = xyz_plot(webui)
    x = labels.index("[LoRA] weight")
    p = webui.make_p(prompt="a toy <lora:mine:1>")
    res = plot.run(p, x, "0, 0.5:1, 1:0, 0-1 [3]", [], 0, "", [], 0, "", [], True)
    assert [c["prompt"] for c in webui.processing.calls] == [
        "a toy ", "a toy <lora:mine:0.5:1>", "a toy <lora:mine:1:0>",
        "a toy ", "a toy <lora:mine:0.5>", "a toy <lora:mine:1>",
    ]  # fmt: skip
    assert len(res.images) == 1 + 6
    assert res.images[0].width >= 6 * 64  # one column per weight
    from lora_trainer.webui.grid_values import GridError

    calls = len(webui.processing.calls)
    for bad, message in (("0.5:x", "`0.5:x` is not a weight pair"), ("1-", "`1-` is not")):
        with pytest.raises(GridError, match=message):
            plot.run(
                webui.make_p(prompt="a toy <lora:mine:1>"), x, bad, [], 0, "", [], 0, "", [], True
            )
    assert len(webui.processing.calls) == calls  # refused before any image


def test_the_ancestral_note_reaches_api_callers(webui):
    pytest.importorskip(
        "gradio", reason="the A1111 profile has gradio 3.41; Forge's profile has none"
    )
    from modules.api import api

    webui.add_lora("mine.safetensors")
    load_scripts(webui)
    server = api.Api()
    request = {
        "prompt": "a toy", "seed": 42, "steps": 12, "width": 64, "height": 64,
        "sampler_name": "Euler", "script_name": "lora comparison grid",
        "script_args": [["mine"], "0, 1", "Sampler", "Euler, Euler a", "Nothing", "", False, False, 0],
    }  # fmt: skip
    status, reply = server.text2imgapi(request)
    assert status == 200
    info = json.loads(reply["info"])
    note = "Euler a adds fresh noise at every step"
    assert note in info["extra_generation_params"]["LoRA grid note"]
    assert "LoRA grid note: " in info["infotexts"][0] and note in info["infotexts"][0]
    assert all("LoRA grid note" not in text for text in info["infotexts"][1:])  # cells: no
    # the note does not disturb pasting the grid's infotext back
    from modules import infotext_utils

    params = infotext_utils.parse_generation_parameters(info["infotexts"][0])
    assert params["LoRA grid Y values"] == "Euler, Euler a" and params["Seed"] == "42"

    request["script_args"][3] = "Euler, DPM++ 2M"  # deterministic samplers: no note
    status, reply = server.text2imgapi(request)
    info = json.loads(reply["info"])
    assert "LoRA grid note" not in info["extra_generation_params"]
    assert "LoRA grid note" not in info["infotexts"][0]


def test_skipping_a_shared_image_skips_every_cell_that_shares_it(webui):
    webui.add_lora("mine.safetensors", epoch=3)
    webui.add_lora("mine_epochs/mine-000001.safetensors", output_name="mine", epoch=1)
    webui.add_lora("mine_epochs/mine-000002.safetensors", output_name="mine", epoch=2)
    webui.networks.list_available_networks()

    def press_skip(p):
        if len(webui.processing.calls) == 1:  # the weight-0 image, shared by all 3 epochs
            webui.state.skip()

    webui.processing.on_sample = press_skip
    res = run_grid(webui, webui.make_p(), weights="0, 1", y_type="Epoch", y_values="")
    prompts = [c["prompt"] for c in webui.processing.calls]
    assert prompts.count("a photo of a toy") == 1 and len(prompts) == 4  # generated once
    assert webui.state.job_count == 4 and webui.state.job_no == 4
    assert len(res.images) == 1 + 3 and "3 cells were skipped." in res.comments


def test_xyz_cells_without_the_lora_do_not_report_its_hash(webui):
    # Seen in a real A1111 v1.10.1: X/Y/Z plot cells are shallow copies of p that share
    # extra_generation_params, so a weight-0 cell after a LoRA cell kept "Lora hashes".
    import extra_networks_lora
    from harness import live_tiny_model

    webui.shared.sd_model = live_tiny_model()  # the Lora files really load into it
    extra_networks_lora.register()  # the <lora:...> handler that writes "Lora hashes"
    webui.add_lora("mine.safetensors")
    plot, labels = xyz_plot(webui)
    x = labels.index("[LoRA] weight")
    p = webui.make_p(prompt="a toy <lora:mine:1>")
    res = plot.run(p, x, "1, 0, 0.5", [], 0, "", [], 0, "", [], True)
    cells = res.infotexts[1:]
    with_lora = [("<lora:mine" in t, "Lora hashes" in t) for t in cells]
    assert with_lora == [(True, True), (False, False), (True, True)]
    assert "Lora hashes" not in p.extra_generation_params  # the user's p is left as it was


def test_grid_job_keeps_its_settings_with_the_webuis_builtin_scripts(webui):
    # Seen in a real A1111 v1.10.1: "Render comparison grid" rendered with the txt2img
    # tab's default steps, sampler and seed, because the sampler and seed controls are
    # always-on scripts whose setup() copies the UI's values into p (unless p.is_api).
    pytest.importorskip(
        "gradio", reason="the A1111 profile has gradio 3.41; Forge's profile has none"
    )
    import gradio as gr

    from lora_trainer.webui.grid import grid_job_for_run, run_grid_job

    builtin = FAKE_WEBUI / "modules" / "processing_scripts"
    webui.scripts.load_scripts(
        [(str(FAKE_WEBUI), str(builtin / n)) for n in ("sampler.py", "seed.py")]
    )
    runner = webui.scripts.scripts_txt2img
    runner.initialize_scripts(False)
    with gr.Blocks():  # the txt2img tab's layout: the sections first, then the Script dropdown
        runner.setup_ui_for_section("sampler")
        runner.setup_ui_for_section("seed")
        runner.setup_ui()
    webui.shared.opts.outdir_txt2img_grids = str(webui.tmp / "grids")
    webui.shared.opts.outdir_txt2img_samples = str(webui.tmp / "samples")
    lora = webui.add_lora("mine.safetensors")
    sample = {"prompt": "sks toy", "seed": 7, "sample_steps": 3, "scale": 5.0, "width": 64,
              "height": 64, "sample_sampler": "euler_a"}  # fmt: skip
    run_grid_job(grid_job_for_run(lora, sample, weights="0, 1"))
    calls = webui.processing.calls
    assert len(calls) == 2
    assert {(c["seed"], c["steps"], c["sampler_name"], c["cfg_scale"]) for c in calls} == {
        (7, 3, "Euler a", 5.0)
    }


def test_a_stopped_epoch_grid_does_not_claim_every_image_was_generated(webui):
    # Seen in a real A1111 v1.10.1: a grid stopped by a failed image said "so 9 images
    # were generated for 10 cells. Stopped: 2 of 10 cells are done."
    webui.add_lora("mine.safetensors", epoch=2)
    webui.add_lora("mine_epochs/mine-000001.safetensors", output_name="mine", epoch=1)
    webui.networks.list_available_networks()

    def press_interrupt(p):
        if len(webui.processing.calls) == 2:
            webui.state.interrupt()

    webui.processing.on_sample = press_interrupt
    res = run_grid(webui, webui.make_p(), weights="0, 1", y_type="Epoch", y_values="")
    assert "Stopped: 2 of 4 cells are done." in res.comments  # weight 0 is one image
    assert "were generated" not in res.comments
