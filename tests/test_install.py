"""install.py: adds only what is missing, never touches the WebUI's packages, never crashes."""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE_WEBUI = Path(__file__).resolve().parent / "fake_webui"
sys.path.insert(0, str(FAKE_WEBUI))  # A1111 has `launch` at the top level of its folder

import launch  # noqa: E402  (the fake, tests/fake_webui/launch.py)


def _load_install():
    spec = importlib.util.spec_from_file_location("lora_trainer_install", REPO / "install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


install = _load_install()


def _engine_pins() -> dict[str, str]:
    """name -> pinned version, read from requirements/engine.txt independently of install.py."""
    text = (REPO / "requirements" / "engine.txt").read_text()
    return dict(re.findall(r"^\s*([A-Za-z0-9_.-]+)==([^\s;#]+)", text, flags=re.M))


PINS = _engine_pins()

# What A1111 v1.10.1's venv holds (its requirements_versions.txt and their dependencies).
WEBUI_PACKAGES = {
    "torch": "2.1.2+cu121",
    "transformers": "4.30.2",
    "accelerate": "0.21.0",
    "safetensors": "0.4.2",
    "huggingface-hub": "0.36.2",
    "numpy": "1.26.2",
    "pillow": "9.5.0",
    "filelock": "3.13.1",
    "regex": "2023.12.25",
    "requests": "2.32.3",
    "packaging": "24.1",
    "psutil": "5.9.5",
    "pyyaml": "6.0.1",
    "tqdm": "4.66.4",
    "tomli": "2.0.1",  # needed on Python 3.10 (A1111's default); then present as well
}


def _real_requires(name: str) -> list[str]:
    # The Requires-Dist lines of the real wheels installed in the test environment.
    return importlib.metadata.requires(name) or []


class FakeEnvironment:
    """Installed distributions as a dict; implements install.py's Environment protocol."""

    def __init__(self, packages: dict[str, str]) -> None:
        self.packages = {self._key(k): v for k, v in packages.items()}
        self.refreshed = 0

    @staticmethod
    def _key(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    def version(self, name: str) -> str | None:
        return self.packages.get(self._key(name))

    def requires(self, name: str) -> list[str]:
        return _real_requires(name) if self._key(name) in {"diffusers", "peft"} else []

    def refresh(self) -> None:
        self.refreshed += 1

    def add_from_pip_command(self, command: str) -> None:
        for arg in shlex.split(command):
            if "==" in arg:
                name, version = arg.split("==")
                self.packages[self._key(name)] = version


def _env(**overrides: str | None) -> FakeEnvironment:
    packages = {**WEBUI_PACKAGES, **PINS}
    for name, version in overrides.items():
        packages.pop(name, None)
        if version is not None:
            packages[name] = version
    return FakeEnvironment(packages)


def _pip_that_installs(env: FakeEnvironment):
    """The fake launch.run_pip, plus pip's effect on the (fake) environment."""

    def run_pip(command, desc=None, live=launch.default_command_live):
        result = launch.run_pip(command, desc, live)
        if result is not None:
            env.add_from_pip_command(command)
        return result

    return run_pip


@pytest.fixture(autouse=True)
def _fresh_launch():
    launch.reset()
    yield
    launch.reset()


def _run(env: FakeEnvironment, run_pip=None) -> list[str]:
    lines: list[str] = []
    rc = install.main(env=env, run_pip=run_pip or _pip_that_installs(env), out=lines.append)
    assert rc == 0
    return lines


# --- what gets installed -------------------------------------------------------------------


def test_engine_requirements_come_from_engine_txt():
    assert {"diffusers", "peft"} <= PINS.keys()
    needs = {n.name: n for n in install.read_needs(marker_env={"python_version": "3.11"})}
    assert {name: n.install for name, n in needs.items()} == {
        name: f"{name}=={version}" for name, version in PINS.items()
    }
    assert needs["diffusers"].accepted == f">={PINS['diffusers']},<1"


def test_another_pin_in_engine_txt_is_what_gets_installed(tmp_path):
    reqs = tmp_path / "engine.txt"
    reqs.write_text("# comment\n\ndiffusers==0.99.1  # trailing comment\npeft==0.13.2\n")
    env = _env(diffusers=None)
    lines: list[str] = []
    install.main(env=env, run_pip=_pip_that_installs(env), out=lines.append, requirements=reqs)
    assert [c.command for c in launch.pip_calls] == ["install --no-deps diffusers==0.99.1"]


def test_nothing_missing_means_no_pip_call_and_no_output():
    assert _run(_env()) == []
    assert launch.pip_calls == []


def test_missing_diffusers_is_installed_alone_without_dependencies():
    env = _env(diffusers=None)
    lines = _run(env)
    assert len(launch.pip_calls) == 1
    call = launch.pip_calls[0]
    assert shlex.split(call.command) == ["install", "--no-deps", f"diffusers=={PINS['diffusers']}"]
    assert "diffusers" in call.desc
    assert call.command_line.endswith(f"-m pip {call.command} --prefer-binary")
    assert lines == [f"LoRA trainer: installed diffusers {PINS['diffusers']}"]
    assert env.refreshed == 1


def test_both_missing_are_installed_in_one_call():
    env = _env(diffusers=None, peft=None)
    lines = _run(env)
    assert [shlex.split(c.command) for c in launch.pip_calls] == [
        ["install", "--no-deps", f"diffusers=={PINS['diffusers']}", f"peft=={PINS['peft']}"]
    ]
    assert lines == [f"LoRA trainer: installed diffusers {PINS['diffusers']}, peft {PINS['peft']}"]


def test_second_run_after_install_does_nothing():
    env = _env(diffusers=None, peft=None)
    _run(env)
    launch.pip_calls.clear()
    assert _run(env) == []
    assert launch.pip_calls == []


def test_tomli_is_added_on_python_310_only():
    py310 = {n.name: n for n in install.read_needs(marker_env={"python_version": "3.10"})}
    py311 = {n.name: n for n in install.read_needs(marker_env={"python_version": "3.11"})}
    assert "tomli" in py310 and "tomli" not in py311
    # ">" must not reach the shell that run_pip hands the command to
    assert install.pip_command([py310["tomli"]]) == f'install --no-deps "{py310["tomli"].install}"'
    assert shlex.split(install.pip_command([py310["tomli"]]))[-1].startswith("tomli>=")


# --- versions the WebUI already has ------------------------------------------------------------


@pytest.mark.parametrize(
    ("diffusers", "peft"),
    [("0.32.2", "0.14.0"), ("0.33.0.dev0", PINS["peft"]), (PINS["diffusers"], "0.17.1")],
)
def test_compatible_other_versions_are_used_as_they_are(diffusers, peft):
    assert _run(_env(diffusers=diffusers, peft=peft)) == []
    assert launch.pip_calls == []


@pytest.mark.parametrize(
    ("name", "found"), [("diffusers", "0.27.2"), ("diffusers", "1.0.0"), ("peft", "0.10.0")]
)
def test_incompatible_version_is_reported_not_changed(name, found):
    lines = _run(_env(**{name: found}))
    assert launch.pip_calls == []
    assert len(lines) == 1
    message = lines[0]
    assert "\n" not in message
    assert message.startswith("LoRA trainer:")
    assert f"{name} {found} is installed" in message
    assert f">={PINS[name]},<1" in message
    assert "will not change it" in message


def test_incompatible_one_is_kept_while_the_missing_one_is_installed():
    lines = _run(_env(diffusers="0.20.0", peft=None))
    assert [c.command for c in launch.pip_calls] == [f"install --no-deps peft=={PINS['peft']}"]
    assert any("diffusers 0.20.0 is installed" in line for line in lines)
    assert lines[-1] == f"LoRA trainer: installed peft {PINS['peft']}"


# --- the WebUI's own packages -------------------------------------------------------------------


def test_missing_or_old_webui_packages_are_reported_never_installed():
    lines = _run(_env(transformers="4.25.1", torch=None))
    assert launch.pip_calls == []
    assert len(lines) == 1  # one paragraph for all of them
    assert "transformers>=4.30 (found 4.25.1)" in lines[0]
    assert "torch>=2.1 (missing)" in lines[0]
    assert "will not work" in lines[0] and "\n" not in lines[0]


def test_dependencies_of_added_packages_are_checked():
    # diffusers declares huggingface-hub>=0.23.2; --no-deps means pip will not check it
    lines = _run(_env(**{"huggingface-hub": "0.20.3", "importlib-metadata": None}))
    assert launch.pip_calls == []
    assert len(lines) == 1
    assert re.search(
        rf"huggingface-hub>=[0-9.]+ \(found 0\.20\.3, for diffusers {re.escape(PINS['diffusers'])}\)",
        lines[0],
    )
    # declared by diffusers but only used on Python < 3.8; A1111's venv does not have it
    assert "importlib" not in lines[0]


def test_a_package_two_rules_need_is_named_once():
    lines = _run(_env(accelerate="0.18.0"))  # the trainer and peft both need accelerate
    assert len(lines) == 1 and lines[0].count("accelerate") == 1


def test_dependencies_of_an_unusable_version_are_not_checked():
    # 0.20 is enough for peft (>=0.17), too old for diffusers 0.31 (>=0.23.2)
    lines = _run(_env(diffusers="0.20.0", **{"huggingface-hub": "0.20.0"}))
    assert len(lines) == 1 and "huggingface" not in lines[0]


# --- pip failures ---------------------------------------------------------------------------


def test_pip_failure_is_a_message_not_an_exception():
    launch.fail_with = "ERROR: No matching distribution found for diffusers==0.31.0"
    lines = _run(_env(diffusers=None))
    assert len(launch.pip_calls) == 1
    assert len(lines) == 1
    assert "could not install" in lines[0] and "No matching distribution" in lines[0]
    assert "--no-deps" in lines[0]


def test_skip_install_leaves_a_clear_message():
    launch.args.skip_install = True  # A1111's --skip-install makes run_pip a no-op
    lines = _run(_env(peft=None))
    assert launch.pip_calls == []
    assert len(lines) == 1 and "peft is still not installed" in lines[0]


def test_broken_requirements_file_is_a_message(tmp_path):
    lines: list[str] = []
    rc = install.main(env=_env(), out=lines.append, requirements=tmp_path / "nope.txt")
    assert rc == 0 and len(lines) == 1 and "Nothing was changed" in lines[0]


# --- run the way A1111 runs it -------------------------------------------------------------------


def _run_installer(tmp_path: Path, pythonpath: list[Path], bare_site: Path | None = None):
    """Like launch_utils.run_extension_installer: the WebUI's python, webui root as cwd.

    With `bare_site`, site-packages are hidden (-S) and the fake pip "installs" into that folder.
    """
    webui = tmp_path / "webui"
    webui.mkdir(exist_ok=True)
    log = tmp_path / "pip.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
        "FAKE_WEBUI_PIP_LOG": str(log),
    }
    env.pop("FAKE_WEBUI_SITE", None)
    flags = []
    if bare_site is not None:
        env["FAKE_WEBUI_SITE"] = str(bare_site)
        flags.append("-S")
    result = subprocess.run(
        [sys.executable, *flags, str(REPO / "install.py")],
        cwd=webui,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def test_subprocess_with_everything_present_is_silent(tmp_path):
    # The test environment holds the WebUI's pins plus engine.txt's packages.
    result, calls = _run_installer(tmp_path, [FAKE_WEBUI])
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr, calls) == ("", "", [])


def test_fast_path_imports_neither_torch_nor_pip_nor_launch(tmp_path):
    code = f"import runpy, sys\nrunpy.run_path({str(REPO / 'install.py')!r}, run_name='__main__')\n"
    probe = (
        "import atexit, sys\n"
        "heavy = ('torch', 'transformers', 'diffusers', 'pip', 'launch')\n"
        "atexit.register(lambda: print(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(FAKE_WEBUI)}
    result = subprocess.run(
        [sys.executable, "-c", probe + code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_subprocess_with_an_incompatible_diffusers(tmp_path):
    shadow = tmp_path / "shadow"  # earlier on sys.path than site-packages
    dist_info = shadow / "diffusers-0.27.2.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: diffusers\nVersion: 0.27.2\n")
    result, calls = _run_installer(tmp_path, [FAKE_WEBUI, shadow])
    assert result.returncode == 0 and result.stderr == ""
    assert calls == []
    assert "diffusers 0.27.2 is installed" in result.stdout


def test_subprocess_in_a_bare_environment_installs_once_then_never_again(tmp_path):
    # -S hides site-packages: nothing but the standard library, `packaging` and the fake
    # launch module is importable, so diffusers and peft are missing.
    site = tmp_path / "site"
    import packaging

    shutil.copytree(Path(packaging.__file__).parent, site / "packaging")
    result, calls = _run_installer(tmp_path, [FAKE_WEBUI, site], bare_site=site)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert [shlex.split(c["command"])[:2] for c in calls] == [["install", "--no-deps"]]
    installed = [a for a in shlex.split(calls[0]["command"])[2:] if not a.startswith("tomli")]
    assert installed == [f"{name}=={version}" for name, version in PINS.items()]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Installing ")  # printed by run_pip, as A1111's run() does
    assert lines[-1].startswith("LoRA trainer: installed diffusers")
    assert "torch>=2.1 (missing)" in result.stdout  # the bare environment has no torch either

    again, calls_again = _run_installer(tmp_path, [FAKE_WEBUI, site], bare_site=site)
    assert again.returncode == 0
    assert len(calls_again) == len(calls) == 1  # the log is shared: no second call
    assert "installed" not in again.stdout


# --- metadata.ini -------------------------------------------------------------------------------


def test_metadata_ini_parses_as_a1111_reads_it():
    # modules/extensions.py ExtensionMetadata: ConfigParser().read(path), in the locale's
    # encoding, so the file must be plain ASCII
    path = REPO / "metadata.ini"
    path.read_bytes().decode("ascii")
    config = configparser.ConfigParser()
    assert config.read(path) == [str(path)]
    for section in config.sections():  # interpolation errors would only show on get()
        assert all(config.get(section, key) for key in config[section])
    name = config.get("Extension", "Name", fallback=None)
    # A1111's rule for canonical names: lowercase letters, digits, dashes, underscores
    assert name and re.fullmatch(r"[a-z0-9_-]+", name)
    assert config.get("Extension", "Requires", fallback="") == ""
    # callback-order sections must start with the canonical name, which v1.10.1 takes from
    # the folder the user cloned into; we cannot know it, so there must be none
    assert not [s for s in config.sections() if s.startswith("callbacks/")]
    assert config.get("Extension", "Title", fallback="") == "LoRA Trainer"
