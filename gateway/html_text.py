"""HTML mail as a reader sees it: visible text, code shown as code, and link targets.

Content rules look at what a recipient reads, so the text of an HTML part drops what a
mail client never shows (`<style>`, `<script>`, `<head>`, comments, which also hide
Outlook's conditional blocks) and keeps what it does (text, image alt text, hidden
preheaders, which inboxes show as the preview). Text inside `<pre>`, `<code>` and the like
is kept apart: a developer newsletter that shows `{{ name }}` in a code sample is not a
merge-tag leak. Link and image targets are returned URL-decoded, because a leaked tag in a
link arrives as `%7B%7Bid%7D%7D`. Pure functions only, standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote

# Elements whose content a mail client never displays.
_HIDDEN = frozenset({"style", "script", "head", "title", "template", "noscript", "xml"})
# Elements whose content is shown as code (kept out of prose checks).
_CODE = frozenset({"pre", "code", "kbd", "samp", "tt", "xmp", "var"})
# Elements that start a new line of text.
_BLOCK = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    }
)
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "wbr"})
_LINK_ATTRS = frozenset({"href", "src", "background", "action"})
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u200b\u200c\u200d\u2060\ufeff]+")
_BLANKS = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class HtmlText:
    """What an HTML part shows: prose, code samples and link targets."""

    text: str
    code: str
    links: tuple[str, ...]


def tidy(text: str) -> str:
    """Collapse runs of blanks within lines and of empty lines; strip each line."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


class _Reader(HTMLParser):
    """Collects visible text, code and link targets; tolerant of broken markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.code: list[str] = []
        self.links: list[str] = []
        self._hidden = 0
        self._code = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN and tag not in _VOID:
            self._hidden += 1
            return
        if tag in _CODE:
            self._code += 1
        if tag in _BLOCK:
            self.text.append("\n")
        for name, value in attrs:
            if value and name in _LINK_ATTRS:
                self.links.append(unquote(value.strip()))
            elif value and name == "alt" and not self._hidden:
                self.text.append(f" {value} ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <img/>: never opens an element, so the hidden and code depths stay put.
        if tag in _BLOCK:
            self.text.append("\n")
        for name, value in attrs:
            if value and name in _LINK_ATTRS:
                self.links.append(unquote(value.strip()))
            elif value and name == "alt" and not self._hidden:
                self.text.append(f" {value} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN and tag not in _VOID:
            self._hidden = max(0, self._hidden - 1)
            return
        if tag in _CODE:
            self._code = max(0, self._code - 1)
            if not self._code:
                self.code.append("\n")
        if tag in _BLOCK:
            self.text.append("\n")

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._code:
            self.code.append(data)
            self.text.append(" ")  # the sample is gone from the prose, the words around it stay
        else:
            self.text.append(data)


def html_to_text(html: str) -> HtmlText:
    """Return the visible text, the code samples and the link targets of an HTML document."""
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return HtmlText(
        text=tidy("".join(reader.text)),
        code=tidy("".join(reader.code)),
        links=tuple(dict.fromkeys(link for link in reader.links if link)),
    )


_FENCE = re.compile(r"^\s*(```|~~~)")
_INDENTED = re.compile(r"^(?: {4}|\t)")


def split_code(text: str) -> tuple[str, str]:
    """Split a text/plain body into prose and code (Markdown fences and indented blocks).

    An indented block counts as code only after an empty line, as in Markdown, so a
    wrapped paragraph whose continuation lines are indented stays prose.
    """
    prose: list[str] = []
    code: list[str] = []
    fenced = False
    indented = False
    previous_blank = True
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            code.append(line)
            prose.append("")
            previous_blank = False
            continue
        blank = not line.strip()
        if not fenced and not blank:
            indented = bool(_INDENTED.match(line)) and (indented or previous_blank)
        if fenced or (indented and not blank):
            code.append(line)
            prose.append("")
        else:
            prose.append(line)
        previous_blank = blank
    return "\n".join(prose), "\n".join(code)
