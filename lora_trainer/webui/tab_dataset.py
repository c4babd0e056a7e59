"""The tab's Dataset section: the folder helper (build or check a kohya folder) and the dataset fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dataset.layout_build import DEFAULT_TEMPLATE, BuildRequest, build_dataset_folder
from ..dataset.layout_check import CheckOptions, check_dataset_folder
from ..errors import UserError
from . import form, host
from .ui_compat import uploaded_paths


@dataclass
class DatasetSection:
    sources: Any
    uploads: Any
    token: Any
    class_word: Any
    repeats: Any
    template: Any
    destination: Any
    reg_sources: Any
    target_steps: Any
    build: Any
    check: Any
    report: Any


def default_destination(token: str) -> Path:
    """Where a built dataset goes when no folder is given: outputs/lora-trainer/datasets/<token>."""
    return host.outputs_dir() / "lora-trainer" / "datasets" / (token.strip() or "dataset")


def build_dataset_section(controls) -> DatasetSection:
    """Lay out the helper and add the dataset fields (train/reg folder, captions) to the form."""
    import gradio as gr

    gr.Markdown(
        "Point the helper at your images: it copies them into kohya's layout "
        "(`img/<repeats>_<trigger> <class>/`), writes a caption for each image that has none, "
        "and shows the step count. Or give an existing folder below and check it."
    )
    with gr.Row():
        sources = gr.Textbox(label="Images folder", elem_id="lora_trainer_ds_sources",
                             placeholder="a folder of images (captions beside them are kept)")  # fmt: skip
        uploads = gr.File(label="...or upload images", file_count="multiple", file_types=["image"],
                          elem_id="lora_trainer_ds_uploads")  # fmt: skip
    with gr.Row():
        token = gr.Textbox(
            label="Trigger word", value="", placeholder="e.g. sks", elem_id="lora_trainer_ds_token"
        )
        class_word = gr.Textbox(label="Class word", placeholder="e.g. dog, woman, style",
                                elem_id="lora_trainer_ds_class")  # fmt: skip
        repeats = gr.Number(
            label="Repeats", value=10, precision=0, elem_id="lora_trainer_ds_repeats"
        )
    with gr.Row():
        template = gr.Textbox(label="Caption for images without one", value=DEFAULT_TEMPLATE,
                              info="{token}, {class} and {name} are filled in", elem_id="lora_trainer_ds_template")  # fmt: skip
        destination = gr.Textbox(label="Build into folder", elem_id="lora_trainer_ds_destination",
                                 placeholder="empty: outputs/lora-trainer/datasets/<trigger word>")  # fmt: skip
        reg_sources = gr.Textbox(label="Regularization images folder (optional)",
                                 elem_id="lora_trainer_ds_reg_sources")  # fmt: skip
    build = gr.Button("Build dataset folder", elem_id="lora_trainer_ds_build")
    with gr.Row():
        for spec in form.main_fields()["dataset"]:
            controls.add(spec, _dataset_field(spec))
    with gr.Row():
        target_steps = gr.Number(label="Suggest repeats for about this many steps", value=None,
                                 precision=0, elem_id="lora_trainer_ds_target")  # fmt: skip
        check = gr.Button("Check dataset folder", elem_id="lora_trainer_ds_check")
    report = gr.Textbox(
        label="Dataset report", lines=10, interactive=False, elem_id="lora_trainer_ds_report"
    )
    return DatasetSection(
        sources, uploads, token, class_word, repeats, template, destination, reg_sources,
        target_steps, build, check, report,
    )  # fmt: skip


def _dataset_field(spec):
    from .tab_training import make_component

    return make_component(spec, spec.default)


def build_dataset(
    sources: str, uploads: Any, token: str, class_word: str, repeats: float | None, template: str,
    destination: str, reg_sources: str, caption_extension: str, epochs: float | None,
    batch_size: float | None,
) -> tuple[str, str, str, str]:  # fmt: skip
    """Build the folder; returns (report, train folder, reg folder, trigger words) for the form."""
    paths = uploaded_paths(uploads)
    if sources and sources.strip():
        paths.insert(0, Path(sources.strip()).expanduser())
    token, class_word = (token or "").strip(), (class_word or "").strip()
    out = (
        Path(destination.strip()).expanduser()
        if destination and destination.strip()
        else default_destination(token)
    )
    request = BuildRequest(
        sources=paths,
        token=token,
        class_word=class_word,
        repeats=int(repeats or 0),
        out=out,
        reg_sources=[Path(reg_sources.strip()).expanduser()]
        if reg_sources and reg_sources.strip()
        else [],
        caption_template=template or DEFAULT_TEMPLATE,
        caption_extension=caption_extension or ".txt",
    )
    try:
        result = build_dataset_folder(request)
    except UserError as exc:
        return f"Cannot build the dataset: {exc.message}", _keep(), _keep(), _keep()
    lines = result.summary_lines(max(1, int(epochs or 1)), max(1, int(batch_size or 1)))
    reg = str(result.root / "reg") if result.reg is not None else ""
    trigger = " ".join(t for t in (token, class_word) if t)
    return "\n".join(lines), str(result.root / "img"), reg, trigger


def _keep() -> Any:
    import gradio as gr

    return gr.update()


def check_dataset(
    train_data_dir: str, caption_extension: str, epochs: float | None, batch_size: float | None,
    target_steps: float | None,
) -> str:  # fmt: skip
    """Every problem in the dataset folder, and its step count; nothing is changed."""
    if not train_data_dir or not train_data_dir.strip():
        return "Give the training images folder first (or build one above)."
    folder = Path(train_data_dir.strip()).expanduser()
    root = folder.parent if folder.name == "img" and (folder.parent / "img") == folder else folder
    options = CheckOptions(
        caption_extension=caption_extension or None,
        epochs=max(1, int(epochs or 1)),
        batch_size=max(1, int(batch_size or 1)),
        target_steps=int(target_steps) if target_steps else None,
    )
    try:
        report = check_dataset_folder(root, options)
    except UserError as exc:
        return f"Cannot check the dataset: {exc.message}"
    return "\n".join(report.lines())
