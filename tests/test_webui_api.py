"""HTTP API /lora-trainer/v1 on the WebUI's FastAPI app: train/status/stop round trip, 409, auth, 422."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

fastapi = pytest.importorskip(
    "fastapi", reason="the A1111 profile has fastapi; the Forge profile has none"
)
httpx = pytest.importorskip("httpx")
sys.path.insert(0, str(Path(__file__).resolve().parent / "fake_webui"))

from harness import fresh_webui, live_tiny_model  # noqa: E402

from lora_trainer.demo import make_demo_dataset  # noqa: E402

V1 = "/lora-trainer/v1"


class Client:
    """A synchronous client over httpx's ASGI transport (works with httpx 0.24 and 0.28)."""

    def __init__(self, app, auth=None) -> None:
        self.app, self.auth = app, auth

    def request(self, method: str, url: str, **kwargs):
        async def send():
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://webui", auth=self.auth
            ) as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs):
        return self.request("POST", url, **kwargs)


@pytest.fixture()
def env(monkeypatch, tmp_path):
    env = fresh_webui(monkeypatch, tmp_path)
    env.shared.sd_model = live_tiny_model()
    monkeypatch.setattr(env.shared.cmd_opts, "api", True)
    env.data = make_demo_dataset(tmp_path / "dataset", count=1)
    return env


def _app():
    from lora_trainer.webui.api import on_app_started

    app = fastapi.FastAPI()
    on_app_started(None, app)
    return app


def _body(env, **extra):
    return {
        "output_name": "api_lora",
        "train_data_dir": str(env.data),
        "resolution": "64",
        "network_dim": 4,
        "max_train_steps": 2,
        "enable_bucket": False,
        **extra,
    }


def test_routes_only_with_the_webui_api(env, monkeypatch):
    monkeypatch.setattr(env.shared.cmd_opts, "api", False)
    assert not [r for r in _app().routes if r.path.startswith(V1)]
    monkeypatch.setattr(env.shared.cmd_opts, "api", True)
    paths = sorted(r.path for r in _app().routes if r.path.startswith(V1))
    assert paths == [f"{V1}/presets", f"{V1}/status", f"{V1}/stop", f"{V1}/train"]


def test_train_status_stop_round_trip(env):
    from modules import call_queue

    from lora_trainer.webui.runner import RUNNER

    client = Client(_app())
    assert client.get(f"{V1}/status").json()["phase"] == "idle"
    with call_queue.queue_lock:  # a txt2img is running: the run must wait for it
        reply = client.post(f"{V1}/train", json=_body(env, max_train_steps=50))
        assert reply.status_code == 202, reply.text
        assert reply.json()["status"] == "queued" and reply.json()["total_steps"] == 50
        second = client.post(f"{V1}/train", json=_body(env, output_name="other"))
        assert (
            second.status_code == 409
            and "already being trained" in second.json()["detail"]["error"]
        )
        assert client.get(f"{V1}/status").json()["phase"] == "queued"
        stop = client.post(f"{V1}/stop", json={"save": False}).json()
        assert stop["stopping"] and stop["save"] is False
    assert RUNNER.join(60)
    status = client.get(f"{V1}/status").json()
    assert status["phase"] == "stopped" and status["step"] == 0 and not status["active"]

    reply = client.post(f"{V1}/train", json=_body(env, sample_prompt="sks toy --w 64 --h 64 --s 1"))
    assert reply.status_code == 202, reply.text
    assert RUNNER.join(120)
    status = client.get(f"{V1}/status").json()
    assert status["phase"] == "done", status["error"]
    assert status["step"] == 2 and len(status["losses"]) == 2
    assert Path(status["result"]["lora_file"]) == env.lora_dir / "api_lora.safetensors"
    assert status["last_sample"] and Path(status["last_sample"]).is_file()
    assert client.post(f"{V1}/stop", json={}).json()["stopping"] is False


def test_api_auth_is_the_webui_api_auth(env, monkeypatch):
    monkeypatch.setattr(env.shared.cmd_opts, "api_auth", "alice:secret,bob:pw")
    app = _app()
    assert Client(app).get(f"{V1}/status").status_code == 401
    assert Client(app, auth=("alice", "wrong")).get(f"{V1}/status").status_code == 401
    assert Client(app, auth=("bob", "pw")).get(f"{V1}/status").status_code == 200
    assert Client(app).post(f"{V1}/train", json=_body(env)).status_code == 401


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        (b"{not json", "body", "not valid JSON"),
        (b"[1, 2]", "body", "JSON object"),
        (b'{"netwrk_dim": 4}', "netwrk_dim", "did you mean 'network_dim'"),
        (b'{"network_dim": "abc"}', "network_dim", "got 'abc'"),
        (b'{"output_dir": "/tmp/x"}', "output_dir", "set by the WebUI"),
        (b'{"preferred_weight": "high"}', "preferred_weight", "must be a number"),
    ],
)
def test_bad_requests_name_the_field(env, body, field, text):
    reply = Client(_app()).post(
        f"{V1}/train", content=body, headers={"content-type": "application/json"}
    )
    assert reply.status_code == 422
    detail = reply.json()["detail"]
    assert detail["field"] == field and text in detail["error"]


def test_invalid_option_values_are_422_before_the_queue(env):
    from modules import progress

    client = Client(_app())
    reply = client.post(f"{V1}/train", json=_body(env, network_dim=0))
    assert reply.status_code == 422 and reply.json()["detail"]["field"] == "network_dim"
    reply = client.post(f"{V1}/train", json=_body(env, train_data_dir=str(env.root / "nope")))
    assert reply.status_code == 422 and "does not exist" in reply.json()["detail"]["error"]
    assert not progress.pending_tasks and client.get(f"{V1}/status").json()["phase"] == "idle"


def test_presets_route(env):
    presets = Client(_app()).get(f"{V1}/presets").json()
    low = next(p for p in presets["presets"] if p["name"] == "Low VRAM")
    assert low["builtin"] and low["options"]["gradient_checkpointing"] is True
    assert presets["folder"].startswith(str(env.root))
