"""Markdown tables: how Tables 2 and 3, check results and exclusions read in the UI and the terminal."""


def markdown_table(rows: list[dict], empty: str = "none") -> str:
    """Rows as a markdown table for the Dagster UI (pandas' to_markdown needs an extra package)."""
    if not rows:
        return empty
    columns = list(rows[0])
    cell = lambda v: "" if v is None else str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
