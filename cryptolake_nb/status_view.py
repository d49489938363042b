"""The lake's status report as a dict that renders as HTML in notebooks."""
from __future__ import annotations

import html
import json

__all__ = ["StatusView"]


class StatusView(dict):
    """The status dict, shown as a small HTML summary in notebooks."""

    def _repr_html_(self) -> str:
        c = self["collector"]
        rows = "".join(
            f"<tr><td>{t}</td><td>{s['buffer_rows']}</td><td>{s['files']}</td><td>{s['rows_committed']}</td>"
            f"<td>{s['rejected']}</td></tr>"
            for t, s in self["tables"].items()
        )
        errors = "".join(f"<li>{_escape(e)}</li>" for e in c.get("errors", [])[-5:])
        return (
            f"<b>lake</b> {_escape(self['root'])} &mdash; collector: <b>{_escape(c['state'])}</b>"
            f"{'<ul>' + errors + '</ul>' if errors else ''}"
            "<table><tr><th>table</th><th>buffered</th><th>files</th><th>committed rows</th><th>rejected</th></tr>"
            f"{rows}</table>"
        )

    def __repr__(self) -> str:
        return json.dumps(self, indent=1, default=str)


def _escape(text: object) -> str:
    return html.escape(str(text))
