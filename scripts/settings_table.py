"""Print the README's configuration table from the Settings class (keep them in step);
``--write`` replaces the table in README.md."""

from __future__ import annotations

import sys
from pathlib import Path

from taskbroker.core.settings import Settings


def table() -> str:
    """Markdown rows: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "—" if default is None else f"`{default}`"
        if name == "data_dir":
            shown = "`.taskbroker`"
        meaning = (field.description or "").replace("|", "\\|")
        shown = shown.replace("|", "\\|")
        rows.append(f"| `TASKBROKER_{name.upper()}` | {shown} | {meaning} |")
    return "\n".join(rows)


def write(readme: Path) -> None:
    """Replace the configuration table in ``readme`` with :func:`table`."""
    lines = readme.read_text().split("\n")
    start = lines.index("| variable | default | meaning |")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    lines[start:end] = table().split("\n")
    readme.write_text("\n".join(lines))


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write(Path(__file__).resolve().parents[1] / "README.md")
    else:
        print(table())
