"""The "Train LoRA" tab: sections laid out, every event wired to the handlers in tab_*.py."""

from __future__ import annotations

from functools import partial
from typing import Any

from . import tab_dataset, tab_presets, tab_run, tab_training
from .tab_training import MODEL_FIELDS, FormControls
from .ui_compat import js

TAB_TITLE = "Train LoRA"
TAB_ID = "lora_trainer"


def build_tab() -> list[tuple[Any, str, str]]:
    """on_ui_tabs callback: [(blocks, title, elem_id)]."""
    blocks, _ = build_blocks()
    return [(blocks, TAB_TITLE, TAB_ID)]


def build_blocks() -> tuple[Any, FormControls]:
    """The tab's Blocks, and its form (whose components are the inputs of most events)."""
    import gradio as gr

    controls = FormControls()
    with gr.Blocks(analytics_enabled=False) as blocks:
        with gr.Row(equal_height=False, elem_id="lora_trainer_main"):
            with (
                gr.Column(scale=3, elem_id="lora_trainer_settings"),
                gr.Tabs(elem_id="lora_trainer_sections"),
            ):
                with gr.Tab("Dataset", elem_id="lora_trainer_tab_dataset"):
                    dataset = tab_dataset.build_dataset_section(controls)
                with gr.Tab("Training", elem_id="lora_trainer_tab_training"):
                    training = tab_training.build_training(controls)
                with gr.Tab("Presets", elem_id="lora_trainer_tab_presets"):
                    presets = tab_presets.build_presets_section()
            with gr.Column(scale=2, elem_id="lora_trainer_run"):
                run = tab_run.build_run_section()
        wire_dataset(dataset, controls)
        wire_training(training, controls)
        wire_presets(presets, controls)
        wire_run(run, controls)
        wire_page_load(blocks, training, run, controls)
    return blocks, controls


def wire_dataset(section: tab_dataset.DatasetSection, controls: FormControls) -> None:
    c = controls.component
    section.build.click(
        tab_dataset.build_dataset,
        inputs=[
            section.sources,
            section.uploads,
            section.token,
            section.class_word,
            section.repeats,
            section.template,
            section.destination,
            section.reg_sources,
            c("caption_extension"),
            c("max_train_epochs"),
            c("train_batch_size"),
        ],
        outputs=[section.report, c("train_data_dir"), c("reg_data_dir"), c("activation_text")],
    )
    section.check.click(
        tab_dataset.check_dataset,
        inputs=[
            c("train_data_dir"),
            c("caption_extension"),
            c("max_train_epochs"),
            c("train_batch_size"),
            section.target_steps,
        ],
        outputs=[section.report],
    )


def wire_training(section: tab_training.TrainingSection, controls: FormControls) -> None:
    section.refresh_model.click(
        tab_training.refresh_model_view,
        outputs=[section.checkpoint, section.arch, *(controls.component(n) for n in MODEL_FIELDS)],
    )


def wire_page_load(
    blocks: Any,
    training: tab_training.TrainingSection,
    run: tab_run.RunSection,
    controls: FormControls,
) -> None:
    """What a newly opened page must show: the model loaded now, and the current run."""
    # A1111 builds the tabs before its startup thread loads the model (modules/initialize.py
    # starts load_model in a thread).
    fields = [controls.component(n) for n in MODEL_FIELDS]
    blocks.load(
        partial(tab_training.page_load_view, training.placeholders),
        inputs=fields,
        outputs=[training.checkpoint, training.arch, *fields],
        show_progress="hidden",
    )
    # A run started elsewhere (API, another browser) or finished before a reload: the JS's
    # click on Refresh at onUiLoaded comes before gradio listens to it in a real A1111.
    blocks.load(tab_run.refresh_view, outputs=run_view(run), show_progress="hidden", queue=False)


def wire_presets(section: tab_presets.PresetsSection, controls: FormControls) -> None:
    fields = controls.components
    section.refresh.click(lambda: tab_presets._choices_update(), outputs=[section.choice])
    section.load.click(
        partial(tab_presets.load_preset, controls),
        inputs=[section.choice],
        outputs=[section.message, *fields],
    )
    section.save.click(
        partial(tab_presets.save_preset, controls),
        inputs=[section.name, section.replace, *fields],
        outputs=[section.message, section.choice],
    )
    section.delete.click(
        tab_presets.delete_preset,
        inputs=[section.choice],
        outputs=[section.message, section.choice],
    )
    section.upload.upload(
        partial(tab_presets.import_settings, controls),
        inputs=[section.upload],
        outputs=[section.message, *fields],
    )
    section.export.click(
        partial(tab_presets.export_settings, controls),
        inputs=fields,
        outputs=[section.message, section.download],
    )


def run_view(section: tab_run.RunSection) -> list[Any]:
    """The outputs of tab_run.refresh_view, in its order."""
    return [section.loss, section.gallery, section.log, section.status, section.prompt,
            section.train, section.stop_save, section.stop, section.grid]  # fmt: skip


def wire_run(section: tab_run.RunSection, controls: FormControls) -> None:
    fields = controls.components
    view = run_view(section)
    section.check.click(
        partial(tab_run.check_settings, controls),
        inputs=fields,
        outputs=[section.estimate, section.status],
    )
    section.train.click(
        partial(tab_run.validate_for_training, controls),
        inputs=fields,
        outputs=[section.token, section.estimate, section.status],
    ).then(
        tab_run.start_training,
        inputs=[section.task_id, section.token],
        outputs=[section.status],
        **js("loraTrainerStart"),
    )  # no refresh here: it would hide a refusal's message; the JS refreshes when the run ends
    # outside gradio's queue: they must answer while the training event holds a queue worker
    section.stop_save.click(
        partial(tab_run.request_stop, True), outputs=[section.status], queue=False
    )
    section.stop.click(partial(tab_run.request_stop, False), outputs=[section.status], queue=False)
    section.refresh.click(tab_run.refresh_view, outputs=view, show_progress="hidden", queue=False)
    section.send.click(None, inputs=[section.prompt], **js("loraTrainerSendToTxt2img"))
    section.grid.click(tab_run.render_grid, outputs=[section.gallery, section.status])
