"""HTTP API under /lora-trainer/v1: train, status, stop, presets (behind the WebUI's --api-auth).

POST /train takes the options of a configuration file (kohya names) as one JSON object,
plus `sample_prompt`, `activation_text`, `preferred_weight`, `overwrite`, `subfolder`
and `preset` (a saved preset the options are laid over). A second train request while a
run is queued or active gets 409; a bad body or option gets 422 naming the field.
"""

from __future__ import annotations

import json
import re
from secrets import compare_digest
from typing import Any

from fastapi import Depends, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..config import OPTION_NAMES
from ..errors import UserError
from ..presets import BUILTIN_PRESETS, check_options
from .estimate import Estimate
from .presets_store import store
from .request import TrainRequest, prepare_run
from .run_status import status_json
from .runner import RUNNER, Busy

PREFIX = "/lora-trainer/v1"
REQUEST_KEYS = {
    "sample_prompt",
    "activation_text",
    "preferred_weight",
    "overwrite",
    "subfolder",
    "preset",
}
SET_BY_WEBUI = {
    "output_dir": "the LoRA goes to the Lora folder (use subfolder for a folder inside it)",
    "pretrained_model_name_or_path": "training uses the checkpoint loaded in the WebUI",
    "device": "training runs where the loaded model is",
    "sample_prompts": "give the prompts' text as sample_prompt",
}


class RequestProblem(Exception):
    """A request the API refuses: HTTP status, message, and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def body(self) -> dict[str, Any]:
        return {"detail": {"error": self.message, "field": self.field}}


def on_app_started(demo: Any, app: Any) -> None:
    """Routes only when the WebUI serves its own API (--api or --nowebui), as /sdapi/v1 does."""
    from .host import api_enabled

    if api_enabled():
        register_routes(app)


def register_routes(app: Any) -> None:
    """Add the routes to the WebUI's FastAPI app (on_app_started)."""
    dependencies = [Depends(_auth_dependency())] if _credentials() else []
    add = app.add_api_route
    add(
        f"{PREFIX}/train", train_route, methods=["POST"], dependencies=dependencies, status_code=202
    )
    add(f"{PREFIX}/status", status_route, methods=["GET"], dependencies=dependencies)
    add(f"{PREFIX}/stop", stop_route, methods=["POST"], dependencies=dependencies)
    add(f"{PREFIX}/presets", presets_route, methods=["GET"], dependencies=dependencies)


def _credentials() -> dict[str, str]:
    """--api-auth "user:password[,user2:password2]", as the WebUI's own API reads it."""
    from modules import shared

    text = getattr(shared.cmd_opts, "api_auth", None) or ""
    pairs = [item.split(":", 1) for item in text.split(",") if ":" in item]
    return {user: password for user, password in pairs}


def _auth_dependency():
    basic = HTTPBasic()

    def check(credentials: HTTPBasicCredentials = Depends(basic)) -> bool:  # noqa: B008
        expected = _credentials().get(credentials.username)
        if expected is not None and compare_digest(credentials.password, expected):
            return True
        raise HTTPException(
            status_code=401,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Basic"},
        )

    return check


async def train_route(request: Request) -> JSONResponse:
    try:
        body = parse_body(await request.body())
        reply = await run_in_threadpool(start_training, body)
    except RequestProblem as problem:
        return JSONResponse(problem.body(), status_code=problem.status)
    return JSONResponse(reply, status_code=202)


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 422 saying what is wrong with it."""
    try:
        body = json.loads(raw.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestProblem(422, f"the body is not valid JSON: {exc}", "body") from None
    if not isinstance(body, dict):
        raise RequestProblem(422, "the body must be a JSON object of options", "body")
    return body


def train_request(body: dict[str, Any]) -> TrainRequest:
    """Split the body into kohya options and the request's own fields (laid over a preset)."""
    options = {k: v for k, v in body.items() if k not in REQUEST_KEYS}
    for name, value in options.items():
        if name in SET_BY_WEBUI:
            raise RequestProblem(
                422, f"option '{name}' is set by the WebUI: {SET_BY_WEBUI[name]}", name
            )
        try:
            check_options({name: value}, "request body")
        except UserError as exc:
            raise RequestProblem(422, exc.message, name) from None
    if body.get("preset"):
        try:
            preset = store().load(str(body["preset"]))
        except UserError as exc:
            raise RequestProblem(422, exc.message, "preset") from None
        options = {**preset.options, **options}
    weight = body.get("preferred_weight", 0.8)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise RequestProblem(422, "preferred_weight must be a number", "preferred_weight")
    for key in ("sample_prompt", "activation_text", "subfolder"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise RequestProblem(422, f"{key} must be a string", key)
    return TrainRequest(
        options=options,
        sample_prompt=body.get("sample_prompt") or "",
        activation_text=body.get("activation_text") or "",
        preferred_weight=float(weight),
        overwrite=bool(body.get("overwrite", False)),
        subfolder=body.get("subfolder"),
    )


def start_training(body: dict[str, Any]) -> dict[str, Any]:
    """Check the request completely, then queue the run; 409 when one is already queued or active."""
    if RUNNER.active:
        raise RequestProblem(409, busy_message(), None)
    request = train_request(body)
    try:
        prepared = prepare_run(request)
    except UserError as exc:
        raise RequestProblem(422, exc.message, field_of(exc.message)) from None
    try:
        task_id = RUNNER.start_in_thread(prepared)
    except Busy:
        raise RequestProblem(409, busy_message(), None) from None
    return {
        "status": "queued",
        "task_id": task_id,
        "name": prepared.output.name,
        "lora_file": str(prepared.output.lora_file),
        "total_steps": prepared.total_steps,
        "total_epochs": prepared.total_epochs,
        "activation_text": prepared.activation_text,
        "estimate": estimate_json(prepared.estimate),
        "warnings": prepared.warnings,
    }


def busy_message() -> str:
    status = RUNNER.board.snapshot()
    where = f" (step {status.step}/{status.total_steps})" if status.step else ""
    return (
        f"a LoRA is already being trained: '{status.name}', {status.phase}{where}; stop it or wait"
    )


def field_of(message: str) -> str | None:
    """The option a validation message is about (the first known option name in it)."""
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", message):
        if word in OPTION_NAMES or word in REQUEST_KEYS:
            return word
    if "checkpoint" in message or "model" in message:
        return "model"
    return None


def estimate_json(estimate: Estimate) -> dict[str, Any]:
    return {
        "vram_gb": estimate.need_gib,
        "free_vram_gb": estimate.free_gib,
        "seconds": round(estimate.seconds),
        "fits": estimate.fits,
        "warnings": estimate.warnings,
        "advice": estimate.advice,
    }


def status_route() -> dict[str, Any]:
    return status_json(RUNNER.board.snapshot())


async def stop_route(request: Request) -> Any:
    try:
        body = parse_body(await request.body())
    except RequestProblem as problem:
        return JSONResponse(problem.body(), status_code=problem.status)
    save = body.get("save", True)
    if not isinstance(save, bool):
        return JSONResponse(RequestProblem(422, "save must be true or false", "save").body(), 422)
    stopping = RUNNER.request_stop(save=save)
    detail = "stopping after the current step" if stopping else "no training is running"
    return {"stopping": stopping, "save": save, "detail": detail}


def presets_route() -> dict[str, Any]:
    presets = []
    for name in store().names():
        try:
            preset = store().load(name)
        except UserError as exc:
            presets.append({"name": name, "error": exc.message})
            continue
        presets.append(
            {
                "name": name,
                "builtin": name in BUILTIN_PRESETS,
                "options": preset.options,
                "extras": preset.extras,
            }
        )
    return {"folder": str(store().folder), "presets": presets}
