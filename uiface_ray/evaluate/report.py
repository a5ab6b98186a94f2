"""One HTML page with tables and the PNG plots next to it."""

from __future__ import annotations

import html
from typing import Sequence

from uiface_ray import storage
from uiface_ray.config import StorageConfig
from uiface_ray.evaluate.plots import png_bytes


def public_config(cfg) -> dict:
    """A config with a ``storage`` section as JSON, without the storage secrets (for logs and results)."""
    d = cfg.model_dump(mode="json")
    secret = {k for k, f in StorageConfig.model_fields.items() if (f.json_schema_extra or {}).get("secret")}
    if isinstance(d.get("storage"), dict):
        d["storage"] = {k: v for k, v in d["storage"].items() if k not in secret}
    return d


def table_html(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return html.escape("-" if v is None else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


class Report:
    """Collects sections; ``write`` puts every PNG and ``index.html`` under one URL."""

    def __init__(self, title: str):
        self.title = title
        self.sections: list[str] = []
        self.images: dict[str, bytes] = {}

    def heading(self, text: str) -> None:
        self.sections.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str) -> None:
        self.sections.append(f"<p>{html.escape(text)}</p>")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.sections.append(table_html(columns, rows))

    def image(self, name: str, img, caption: str = "") -> None:
        if name in self.images:
            raise ValueError(f"report image {name!r} added twice")
        self.images[name] = png_bytes(img)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.sections.append(f'<figure><img src="{html.escape(name)}" alt="{html.escape(name)}">{cap}</figure>')

    def html(self) -> str:
        style = (
            "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:3px 8px;text-align:right}img{max-width:100%}"
        )
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(self.title)}</h1>"
            + "\n".join(self.sections)
            + "</body></html>\n"
        )

    def write(self, url: str, st: StorageConfig | None = None) -> str:
        """Images first, the page last (the page is the commit marker); returns the page URL."""
        for name, data in self.images.items():
            storage.write_bytes_atomic(storage.join(url, name), data, st)
        page = storage.join(url, "index.html")
        storage.write_bytes_atomic(page, self.html().encode(), st)
        return page
