"""Docs whose examples are real exchanges with a running gateway (docs/api.md,
docs/http-sending.md, docs/feedback.md): what changes on every run, and how a test refreshes or checks them.

A test renders the exchanges of its scenario as Markdown; `refresh_or_compare` writes them
between the doc's example markers when SENDBRAKE_UPDATE_DOCS is set (`make docs`), and
otherwise fails when the committed examples no longer match (volatile parts aside).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

START, END = "<!-- examples:start -->", "<!-- examples:end -->"
VOLATILE = [
    (re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b"), "<id>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<time>"),
    (re.compile(r"\b\d{10}\.\d+\b"), "<epoch>"),
    (re.compile(r"\"timestamp\": \d{10}\b"), '"timestamp": <epoch>'),  # SendGrid's events
    (re.compile(r"sha256:[0-9a-f]{12}"), "<policy version>"),  # changes with policies/*.yaml
    (re.compile(r"(cursor=|\"next\": \")[A-Za-z0-9_-]+"), r"\1<cursor>"),
    (re.compile(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}"), "<date>"),
    (re.compile(r"\"size\": \d+,\n(\s+)\"preview\""), r'"size": <n>,\n\1"preview"'),
    (re.compile(r"={15}\d+=="), "<boundary>"),  # MIME boundaries the email package draws
]


def normalise(text: str) -> str:
    """Replace what differs on every run (IDs, times, digests) by placeholders."""
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def refresh_or_compare(doc: Path, fresh: str, section: str = "examples") -> None:
    """Rewrite `doc`'s examples with `fresh` (make docs), or assert they still match.

    A doc with more than one such section names each (`<!-- NAME:start -->` ... `:end`).
    """
    start, end = START.replace("examples", section), END.replace("examples", section)
    text = doc.read_text(encoding="utf-8")
    head, found, rest = text.partition(start)
    assert found, f"{doc.name} has no {start} marker"
    _, _, tail = rest.partition(end)
    if os.environ.get("SENDBRAKE_UPDATE_DOCS"):
        doc.write_text(f"{head}{start}\n\n{fresh}\n{end}{tail}", encoding="utf-8")
        return
    committed = rest.partition(end)[0].strip()
    assert normalise(committed) == normalise(fresh.strip()), (
        f"run `make docs` to refresh {doc.name}"
    )
