"""The README's module map is the import layers that lint-imports enforces, in the same order.

lint-imports checks the code against ``pyproject.toml``; this checks the README against it, so
that the map a new developer reads cannot fall behind the one the build holds the code to.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layers_in_pyproject() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = config["tool"]["importlinter"]["contracts"]
    return [
        {name.strip().removeprefix("chat.") for name in layer.split("|")}
        for layer in contract["layers"]
    ]


def layers_in_readme() -> list[set[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    chain = re.search(r"- Module map .*?:\n(.*?)\n  - ", readme, re.DOTALL)
    assert chain is not None, "README.md has no module map"
    return [
        {name.rstrip("/") for name in re.findall(r"`([a-z_/]+)`", group)}
        for group in chain.group(1).split("→")
    ]


def test_the_readme_module_map_is_the_import_layers() -> None:
    """Every layer of pyproject.toml, and no other module, in the README's order."""
    assert layers_in_readme() == layers_in_pyproject()


def test_every_module_has_a_layer() -> None:
    """A module missing from the layers is checked by nobody: each one has its place."""
    modules = {p.stem for p in (ROOT / "chat").glob("*.py")} - {"__init__", "__main__"}
    packages = {p.parent.name for p in (ROOT / "chat").glob("*/__init__.py")}
    assert set().union(*layers_in_pyproject()) == modules | packages
