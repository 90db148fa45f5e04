"""Hook hygiene (datasette's pattern): every hookspec is documented, in the plugin guide, and
exercised by some test; every hook the built-in plugins implement is a known hookspec."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from taskbroker.core.contract import hookspecs
from taskbroker.core.contract.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "plugins.md"
THIS_FILE = Path(__file__).resolve()

SPECS = sorted(
    name for name, obj in vars(hookspecs).items()
    if callable(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec")
)


def test_there_are_hookspecs() -> None:
    assert len(SPECS) >= 3
    assert all(name.startswith(f"{hookspecs.PROJECT}_") for name in SPECS)


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_has_a_docstring(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc and len(doc) > 40, f"hookspec {name} needs a docstring"


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_is_in_the_plugin_guide(name: str) -> None:
    headings = re.findall(r"^#+ +`?(\w+)\(", GUIDE.read_text(), flags=re.M)
    assert name in headings, f"docs/plugins.md has no section '### {name}(...)'"


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_is_exercised_by_a_test(name: str) -> None:
    users = [p for p in (ROOT / "tests").rglob("*.py")
             if p.resolve() != THIS_FILE and name in p.read_text(errors="replace")]
    assert users, f"no test mentions hook {name}: write one"


def test_builtin_plugins_implement_only_known_hooks() -> None:
    from taskbroker.app import DEFAULT_PLUGINS

    plugins = load_plugins(builtins=DEFAULT_PLUGINS, entry_points=False)
    assert plugins.errors == []
    plugins.manager.check_pending()  # raises for a hookimpl without a hookspec
    for info in plugins.info.values():
        assert set(info.hooks) <= set(SPECS)
