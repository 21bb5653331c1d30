"""`make test` and `make demo` install exactly the versions in requirements-lock.txt."""

import os
import pathlib
import re
from importlib import metadata

import pytest

LOCK = pathlib.Path(__file__).resolve().parents[1] / "requirements-lock.txt"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements-lock.txt: {line!r} is not name==version"
            pins[_canonical(name)] = version
    return pins


def test_lock_pins_every_package_the_project_names():
    pins = _lock()
    for requirement in metadata.requires("sam2-jax") or []:
        name = _canonical(re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0])
        assert name in pins, f"{requirement!r} (pyproject.toml) has no pin in {LOCK.name}"


@pytest.mark.skipif(
    os.environ.get("SAM2_JAX_CHECK_LOCK") != "1",
    reason="only in the environment `make test` installs from the lock",
)
def test_installed_versions_are_the_locked_ones():
    pins = _lock()
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed.pop("sam2-jax")
    installed.pop("pip", None)
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed but not in {LOCK.name} (run `make lock`): {unpinned}"
    wrong = {n: (installed[n], v) for n, v in pins.items() if n in installed and installed[n] != v}
    assert not wrong, f"installed (got, locked) versions differ from {LOCK.name}: {wrong}"
