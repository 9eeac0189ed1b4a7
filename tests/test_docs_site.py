"""The API reference of the documentation site lists every public name, and nothing else.

Read from the sources, without building the site or importing the frameworks: the pages
under ``docs/api/`` are parsed for their ``auto*`` and ``py:*`` entries (under the
``currentmodule`` in force), the modules' ``__all__`` is read from their code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "labelsmooth"
API = ROOT / "docs" / "api"

_DIRECTIVE = re.compile(r"^\.\. (?:auto|py:)(function|class|data|exception|module)::\s*(\S+)\s*$")
_CURRENT_MODULE = re.compile(r"^\.\. (?:py:)?currentmodule::\s*(\S+)\s*$")


def _public_modules() -> dict[str, Path]:
    """Every public module of labelsmooth (no part of its dotted name starts with ``_``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if not any(part.startswith("_") for part in parts):
            modules[".".join(parts)] = path
    return modules


def _all_of(path: Path) -> list[str]:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    msg = f"{path.relative_to(ROOT)} has no __all__"
    raise AssertionError(msg)


def _documented() -> tuple[dict[str, list[str]], set[str]]:
    """The names each reference page documents, by module, and the modules it introduces."""
    names: dict[str, list[str]] = {}
    modules: set[str] = set()
    for page in sorted(API.glob("*.rst")):
        current = None
        for line in page.read_text(encoding="utf-8").splitlines():
            if match := _CURRENT_MODULE.match(line):
                current = match.group(1)
            elif match := _DIRECTIVE.match(line):
                kind, target = match.groups()
                if kind == "module":
                    modules.add(target)
                    current = target
                    continue
                if current is not None and not target.startswith(current + "."):
                    target = f"{current}.{target}"
                module, _, name = target.rpartition(".")
                names.setdefault(module, []).append(name)
    return names, modules


def test_the_reference_is_found() -> None:
    names, modules = _documented()
    assert (API / "index.rst").is_file()
    assert "labelsmooth" in modules, "no page of docs/api/ documents the labelsmooth module"
    assert "cross_entropy" in names.get("labelsmooth", []), "the parser found no entry: has the format changed?"


@pytest.mark.parametrize("module", sorted(_public_modules()))
def test_every_public_name_is_in_the_api_reference(module: str) -> None:
    names, modules = _documented()
    public = _all_of(_public_modules()[module])
    assert module in modules, f"no page of docs/api/ has `.. automodule:: {module}`"
    missing = sorted(set(public) - set(names.get(module, [])))
    assert not missing, f"{module}: {missing} are in __all__ but not in docs/api/"


def test_the_api_reference_documents_only_public_names() -> None:
    names, _ = _documented()
    modules = _public_modules()
    unknown = sorted(set(names) - set(modules))
    assert not unknown, f"docs/api/ documents names of modules that are not public: {unknown}"
    for module, documented in names.items():
        extra = sorted(set(documented) - set(_all_of(modules[module])))
        assert not extra, f"{module}: {extra} are documented in docs/api/ but not in __all__"
        repeated = sorted({name for name in documented if documented.count(name) > 1})
        assert not repeated, f"{module}: {repeated} are documented twice in docs/api/"
