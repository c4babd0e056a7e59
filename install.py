"""Add the LoRA trainer's missing dependencies to the WebUI's Python environment.

AUTOMATIC1111 WebUI runs this file at every start (modules/launch_utils.py,
`run_extension_installer`: a subprocess with the WebUI's python, the WebUI's folder as
working directory and on PYTHONPATH, stdout printed afterwards). Policy:

- Only packages that are missing are installed: those in requirements/engine.txt, plus
  tomli on Python < 3.11. Always `pip install --no-deps` through `launch.run_pip`, so
  pip never upgrades or downgrades anything the WebUI has.
- A package that is present at another version is kept. It is accepted from the pinned
  version up to the next major version (Forge ships its own diffusers and peft); outside
  that range a paragraph explains the problem, and nothing is changed.
- The WebUI's own packages that the engine relies on (torch, transformers, ...) and the
  dependencies of the added packages are checked, never installed: one paragraph lists
  those missing or too old.
- Output: nothing when nothing was needed; one line "LoRA trainer: installed ..." after
  an install; one paragraph per problem. No traceback, and the exit code is always 0.

Fast when nothing is missing: it reads package metadata only; it does not import torch,
pip or the WebUI's `launch` module.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

PREFIX = "LoRA trainer:"
ENGINE_REQUIREMENTS = Path(__file__).resolve().parent / "requirements" / "engine.txt"

# Needed beyond engine.txt: lora_trainer/config.py reads TOML with tomli where the
# standard library has no tomllib.
EXTRA_REQUIREMENTS = ('tomli>=2.0; python_version < "3.11"',)

# The WebUI's own packages the engine uses; checked, never installed.
HOST_REQUIREMENTS = (
    "torch>=2.1",  # Module.load_state_dict(assign=True) shares the live model's tensors
    "transformers>=4.30",
    "accelerate>=0.21",  # peft 0.13 needs it
    "safetensors",
)

# Declared by diffusers but only imported on Python < 3.8; absent from A1111's venv.
IGNORED_DEPENDENCIES = frozenset({"importlib-metadata"})

_SHELL_SAFE = re.compile(r"^[A-Za-z0-9._=-]+$")


class Environment(Protocol):
    """What install.py needs to know about the Python environment (tests pass a fake)."""

    def version(self, name: str) -> str | None:
        """The installed version of distribution `name`, or None if it is not installed."""

    def requires(self, name: str) -> list[str]:
        """The Requires-Dist lines of installed distribution `name`."""

    def refresh(self) -> None:
        """Forget cached answers (called after pip ran)."""


class InstalledEnvironment:
    """The running interpreter's environment, read through importlib.metadata."""

    def _distribution(self, name: str) -> importlib.metadata.Distribution | None:
        # Older importlib.metadata versions match names literally: try the usual spellings.
        for candidate in dict.fromkeys((name, name.replace("-", "_"), name.replace("_", "-"))):
            try:
                return importlib.metadata.distribution(candidate)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None

    def version(self, name: str) -> str | None:
        dist = self._distribution(name)
        return None if dist is None else dist.version

    def requires(self, name: str) -> list[str]:
        dist = self._distribution(name)
        return list(dist.requires or []) if dist is not None else []

    def refresh(self) -> None:
        importlib.invalidate_caches()


@dataclass(frozen=True)
class Need:
    """A package the extension adds: what pip gets, and which installed versions are fine."""

    name: str
    install: str  # e.g. "diffusers==0.31.0"
    accepted: str  # a specifier, e.g. ">=0.31.0,<1"

    def accepts(self, version: str) -> bool:
        return _satisfies(version, self.accepted)


@dataclass
class Plan:
    """What to install, and the problems to report, for one environment."""

    to_install: list[Need] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _satisfies(version: str, specifier: str) -> bool:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(version)
    except InvalidVersion:
        return False
    # A pre-release inside the accepted range (e.g. a build from git) is fine too.
    return SpecifierSet(specifier).contains(parsed, prereleases=True)


def _requirements(lines: Iterable[str], marker_env: dict[str, str] | None = None) -> list:
    """Parse requirement lines (comments and blanks skipped), keeping those whose marker applies.

    `marker_env` overrides marker variables (python_version, ...) of the running interpreter.
    """
    from packaging.requirements import Requirement

    reqs = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": "", **(marker_env or {})}):
            reqs.append(req)
    return reqs


def accepted_range(specifier: str) -> str:
    """Installed versions we accept: a pin "==X" widens to ">=X,<next major"; others stay."""
    from packaging.version import Version

    match = re.fullmatch(r"==\s*([^,*\s]+)", specifier.strip())
    if not match:
        return specifier
    pinned = Version(match.group(1))
    return f">={pinned},<{pinned.major + 1}"


def read_needs(
    path: Path = ENGINE_REQUIREMENTS,
    extra: Iterable[str] = EXTRA_REQUIREMENTS,
    marker_env: dict[str, str] | None = None,
) -> list[Need]:
    """The packages the extension adds: engine.txt's lines, plus `extra` ones it does not name."""
    reqs = _requirements(path.read_text(encoding="utf-8").splitlines(), marker_env)
    named = {_canonical(r.name) for r in reqs}
    reqs += [r for r in _requirements(extra, marker_env) if _canonical(r.name) not in named]
    return [
        Need(
            name=r.name, install=f"{r.name}{r.specifier}", accepted=accepted_range(str(r.specifier))
        )
        for r in reqs
    ]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _python() -> str:
    return sys.executable or "python"


def _incompatible_message(need: Need, found: str) -> str:
    return (
        f"{PREFIX} {need.name} {found} is installed, but the trainer needs {need.name}"
        f"{need.accepted} (tested with {need.install}). The extension will not change it, "
        "because the WebUI or another extension may rely on that version, so training will "
        f'not work until it is replaced. To replace it yourself: "{_python()}" -m pip install '
        f"--no-deps {_shell_arg(need.install)}"
    )


def _unmet(req, env: Environment, required_by: str | None = None) -> str | None:
    """None if `req` is satisfied, else a short note such as "transformers>=4.30 (found 4.25.1)"."""
    found = env.version(req.name)
    if found is not None and _satisfies(found, str(req.specifier)):
        return None
    state = "missing" if found is None else f"found {found}"
    by = f", for {required_by}" if required_by else ""
    return f"{req.name}{req.specifier} ({state}{by})"


def host_problems(env: Environment, host: Iterable[str] = HOST_REQUIREMENTS) -> dict[str, str]:
    """name -> note, for each WebUI package the engine relies on that is missing or too old."""
    problems = {}
    for req in _requirements(host):
        note = _unmet(req, env)
        if note:
            problems[_canonical(req.name)] = note
    return problems


def dependency_problems(env: Environment, needs: Iterable[Need]) -> dict[str, str]:
    """name -> note, for each unmet dependency of an added package that is installed and usable.

    We install with --no-deps, so pip never checks these for us.
    """
    problems: dict[str, str] = {}
    for need in needs:
        version = env.version(need.name)
        if version is None or not need.accepts(version):
            continue
        for req in _requirements(env.requires(need.name)):
            key = _canonical(req.name)
            if key in IGNORED_DEPENDENCIES or key in problems:
                continue
            note = _unmet(req, env, f"{need.name} {version}")
            if note:
                problems[key] = note
    return problems


def unmet_message(notes: Iterable[str]) -> str:
    """One paragraph about the WebUI's packages that do not meet the trainer's needs."""
    return (
        f"{PREFIX} the WebUI's environment lacks what the trainer needs: {'; '.join(notes)}. "
        "The extension does not install or change the WebUI's own packages, so training will "
        "not work until the WebUI provides them (update the WebUI, or install them yourself)."
    )


def plan(env: Environment, needs: Iterable[Need]) -> Plan:
    """Decide what to install: only what is missing; report versions we cannot use."""
    result = Plan()
    for need in needs:
        found = env.version(need.name)
        if found is None:
            result.to_install.append(need)
        elif not need.accepts(found):
            result.problems.append(_incompatible_message(need, found))
    return result


def _shell_arg(spec: str) -> str:
    # run_pip hands one string to a shell: quote specs holding < > and the like.
    return spec if _SHELL_SAFE.match(spec) else f'"{spec}"'


def pip_command(needs: Iterable[Need]) -> str:
    """The `command` argument for launch.run_pip: one install of all missing packages."""
    return " ".join(["install", "--no-deps", *(_shell_arg(n.install) for n in needs)])


def install(
    needs: list[Need], env: Environment, run_pip: Callable[..., object]
) -> tuple[str | None, list[str]]:
    """Install `needs` with one run_pip call; the summary line and any problem paragraphs."""
    specs = ", ".join(n.install for n in needs)
    try:
        run_pip(pip_command(needs), f"{specs} for LoRA trainer")
    except Exception as exc:  # run_pip raises RuntimeError carrying pip's output
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        detail = re.sub(r"^(stdout|stderr): ", "", lines[-1].strip()) if lines else repr(exc)
        return None, [
            f"{PREFIX} could not install {specs} (pip said: {detail}). The Train LoRA tab "
            f'will not work until this is done: run "{_python()}" -m pip '
            f"{pip_command(needs)} and restart the WebUI."
        ]
    env.refresh()
    installed, problems = [], []
    for need in needs:
        found = env.version(need.name)
        if found is None:
            problems.append(
                f"{PREFIX} pip ran but {need.name} is still not installed (is the WebUI "
                "started with --skip-install?). The Train LoRA tab will not work until it is: "
                f'run "{_python()}" -m pip install --no-deps {_shell_arg(need.install)}'
            )
        else:
            installed.append(f"{need.name} {found}")
    summary = f"{PREFIX} installed {', '.join(installed)}" if installed else None
    return summary, problems


def _launch_run_pip() -> Callable[..., object]:
    # Imported only when something must be installed: `launch` pulls in the WebUI's modules.
    try:
        import launch
    except ImportError as exc:
        message = f"the WebUI's launch module cannot be imported ({exc}); run the WebUI"

        def unavailable(command: str, desc: str | None = None, **kwargs: object) -> None:
            raise RuntimeError(message)

        return unavailable
    return launch.run_pip


def main(
    env: Environment | None = None,
    run_pip: Callable[..., object] | None = None,
    out: Callable[[str], object] = print,
    requirements: Path = ENGINE_REQUIREMENTS,
) -> int:
    """Check the environment, install what is missing, print the outcome. Always returns 0."""
    env = env or InstalledEnvironment()
    try:
        import packaging  # noqa: F401  (a dependency of transformers; always in the WebUI)
    except ImportError:
        out(f"{PREFIX} the WebUI's environment has no 'packaging' module, so nothing was checked.")
        return 0
    try:
        needs = read_needs(requirements)
        todo = plan(env, needs)
        summary, install_problems = None, []
        if todo.to_install:
            summary, install_problems = install(todo.to_install, env, run_pip or _launch_run_pip())
        # One note per package, even when the WebUI and a dependency both need it.
        unmet = {**dependency_problems(env, needs), **host_problems(env)}
        problems = todo.problems + install_problems
        if unmet:
            problems.append(unmet_message(unmet[name] for name in sorted(unmet)))
    except Exception as exc:  # never a traceback in the WebUI's startup log
        out(
            f"{PREFIX} the dependency check failed ({type(exc).__name__}: {exc}). Nothing was "
            "changed; the Train LoRA tab may not work."
        )
        return 0
    for paragraph in problems:
        out(paragraph)
    if summary:
        out(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
