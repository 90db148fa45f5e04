"""Print the README's configuration table from the Settings class (keep them in step)."""

from __future__ import annotations

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


if __name__ == "__main__":
    print(table())
