"""The billing engine compiled with mypyc, and the choice between it and its sources.

`pipeline/billing` is plain, strictly typed Python; `build` compiles it with mypyc into
extension modules next to the sources (about 1.7× the throughput of the interpreted engine).
The build records a digest of the sources it compiled. At import, `select` makes sure a
compiled engine is used only while it is current: after an edit or a checkout the sources are
loaded instead, with a warning, so the engine that runs is always the code that is read.

`TOLLGATE_ENGINE` chooses: `auto` (the compiled engine when current, else the sources),
`source` (always the sources), `compiled` (refuse to run without a current build).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

from pipeline.kernel.errors import TollgateError
from pipeline.kernel.settings import ENGINE_MODES

PACKAGE = "pipeline.billing"
DIRECTORY = Path(__file__).resolve().parents[1] / "billing"
MODES = ENGINE_MODES
VARIABLE = "TOLLGATE_ENGINE"
# The runtime mypyc shares between the compiled modules, kept inside the package so that it
# imports wherever tollgate is installed.
_GROUP = PACKAGE + "._compiled"
_DIGEST_FILE = "_compiled.digest"

log = logging.getLogger(__name__)


def sources(directory: Path = DIRECTORY) -> list[Path]:
    return sorted(directory.glob("*.py"))


def extensions(directory: Path = DIRECTORY) -> list[Path]:
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(p for p in directory.iterdir() if p.name.endswith(suffixes))


def source_digest(directory: Path = DIRECTORY) -> str:
    digest = hashlib.sha256()
    for path in sources(directory):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_state(directory: Path = DIRECTORY) -> str:
    """`absent` (no compiled modules), `current` (built from these sources) or `stale`."""
    if not extensions(directory):
        return "absent"
    try:
        built_from = (directory / _DIGEST_FILE).read_text().strip()
    except OSError:
        return "stale"
    return "current" if built_from == source_digest(directory) else "stale"


def select(mode: str, directory: Path = DIRECTORY) -> str:
    """Arrange for `pipeline.billing` to load as `mode` asks; returns what will load.

    Called once by each entry point (`tollgate`, `python -m benchmarks`, the test session),
    before anything imports the engine. An unknown mode counts as `auto` here; `Settings`
    reports it as an error.
    """
    state = build_state(directory)
    if mode == "compiled" and state != "current":
        reason = "is not built" if state == "absent" else "is older than its sources"
        _install(
            _Refuse(f"{VARIABLE}=compiled, but the compiled engine {reason}: run `make engine`")
        )
        return "none"
    if state == "current" and mode != "source":
        return "compiled"
    if state == "stale" and mode != "source":
        log.warning(
            "the compiled billing engine is older than its sources: running the sources "
            "(slower); `make engine` rebuilds it"
        )
    if state != "absent":
        _install(_SourceFinder(directory))
    return "source"


def select_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """`select` as TOLLGATE_ENGINE asks (`auto` when unset): for entry points without Settings."""
    return select(environ.get(VARIABLE) or "auto")


def in_use() -> str:
    """`compiled` or `source`: how the loaded engine runs (imports it)."""
    from pipeline.billing import engine

    return "source" if (engine.__file__ or "").endswith(".py") else "compiled"


def _install(finder: importlib.abc.MetaPathFinder) -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _EngineFinder)]
    sys.meta_path.insert(0, finder)


class _EngineFinder(importlib.abc.MetaPathFinder):
    """Decides how `pipeline.billing` and its modules load; leaves every other import alone."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == PACKAGE or fullname.startswith(PACKAGE + "."):
            return self.engine_spec(fullname)
        return None

    def engine_spec(self, fullname: str) -> ModuleSpec | None:
        raise NotImplementedError


class _SourceFinder(_EngineFinder):
    """Loads the engine's modules from their `.py` files even where compiled ones sit beside."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def engine_spec(self, fullname: str) -> ModuleSpec | None:
        if fullname == PACKAGE:
            return importlib.util.spec_from_file_location(
                fullname,
                self.directory / "__init__.py",
                submodule_search_locations=[str(self.directory)],
            )
        file = self.directory / (fullname.rpartition(".")[2] + ".py")
        return importlib.util.spec_from_file_location(fullname, file) if file.exists() else None


class _Refuse(_EngineFinder):
    def __init__(self, message: str) -> None:
        self.message = message

    def engine_spec(self, fullname: str) -> ModuleSpec | None:
        raise ImportError(self.message, name=fullname)


# -- building ----------------------------------------------------------------------------------


def clean(directory: Path = DIRECTORY) -> int:
    """Remove the compiled modules; the sources run from then on. Returns how many."""
    removed = extensions(directory)
    for path in removed:
        path.unlink()
    (directory / _DIGEST_FILE).unlink(missing_ok=True)
    return len(removed)


def build(echo: Callable[[str], None], directory: Path = DIRECTORY, force: bool = False) -> None:
    """Compile `pipeline/billing` in place with mypyc (needs mypy, setuptools and a C compiler:
    the `dev` extra and gcc). A build that matches the sources is kept unless `force`."""
    if not force and build_state(directory) == "current":
        (directory / _DIGEST_FILE).touch()  # for make: up to date with the sources' times
        echo("the compiled billing engine matches its sources")
        return
    try:
        from mypyc.build import mypycify
        from setuptools import setup
    except ImportError as error:
        raise TollgateError(
            f"compiling the engine needs mypy and setuptools ({error.name} is missing): "
            "pip install -e '.[dev]'"
        ) from None
    if shutil.which(os.environ.get("CC", "gcc")) is None:
        raise TollgateError("compiling the engine needs a C compiler (gcc, or $CC) on PATH")
    top = directory.parent.parent
    work = Path("build", "engine")
    clean(directory)  # a failed build leaves the sources in use, never a mix
    digest = source_digest(directory)
    # The package's own __init__ stays Python: the shared runtime lives inside the package,
    # which must be importable before that runtime loads.
    files = [str(p.relative_to(top)) for p in sources(directory) if p.name != "__init__.py"]
    echo(f"compiling the billing engine ({len(files)} modules) with mypyc; about a minute…")
    started = time.monotonic()
    cwd = os.getcwd()
    os.chdir(top)  # mypyc and build_ext --inplace place each module by its dotted name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # setuptools' notes on pyproject.toml are not ours
            setup(
                name="tollgate-engine",
                ext_modules=mypycify(files, opt_level="3", group_name=_GROUP, target_dir=str(work)),
                script_args=[
                    "--quiet",
                    "build_ext",
                    "--inplace",
                    "--build-temp",
                    str(work / "temp"),
                    # mypyc writes the group's headers under the group's package path
                    "--include-dirs",
                    str(work.joinpath(*_GROUP.split(".")[:-1])),
                ],
            )
    except SystemExit as exit:  # how mypyc and setuptools report a failed build
        if exit.code not in (None, 0):
            clean(directory)
            raise TollgateError(f"compiling the engine failed: {exit.code}") from None
    finally:
        os.chdir(cwd)
    (directory / _DIGEST_FILE).write_text(digest + "\n")
    built = len(extensions(directory))
    echo(f"compiled {built} extension modules in {time.monotonic() - started:.0f} s")
