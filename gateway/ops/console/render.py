"""A held message as its reader would see it, made inert for the console's frame.

The frame is the last of three walls: it is sandboxed (no scripts, an opaque origin, no
forms, no navigation of the page), its document comes with a Content-Security-Policy
that loads nothing but inline styles and `data:` images, and this module rewrites the
HTML first, so a reviewer sees what was blocked instead of a broken page:

- scripts, frames, objects, embeds, `<base>`, `<link>` and `<meta>` (a refresh would
  navigate the frame) are dropped, with everything inside the elements that hold code;
- event-handler attributes (`on…`) and other loading attributes (`srcset`,
  `background`, `ping`, `formaction`, `action`, `poster`) are dropped;
- a remote image becomes a placeholder that names where it would have been loaded from;
- links keep their text and show their target as a tooltip, but cannot be followed;
- `url(…)` and `@import` in styles become inert.

Pure functions; the decoding of the message is the standard library's.
"""

from __future__ import annotations

import email
import email.errors
import html
import re
from email import policy
from email.message import EmailMessage, Message
from html.parser import HTMLParser
from urllib.parse import quote

MAX_DEPTH = 20  # as `gateway.mail.content`: deeper MIME is not read
# Elements dropped with everything inside them: code, or documents of their own.
_DROP_WITH_CONTENT = frozenset(
    {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "template", "title"}
)
_DROP_TAG = frozenset({"base", "link", "meta", "form", "portal", "param"})
_DROP_ATTRIBUTES = frozenset(
    {"srcset", "background", "ping", "formaction", "action", "poster", "lowsrc", "dynsrc"}
)
_SOURCED = frozenset({"img", "input", "image", "video", "audio", "source", "track"})
_LINKS = frozenset({"a", "area"})
_URL = re.compile(r"url\s*\(", re.IGNORECASE)
_IMPORT = re.compile(r"@import\b[^;]*;?", re.IGNORECASE)
_VOID = frozenset(
    {"area", "br", "col", "hr", "img", "input", "source", "track", "wbr", "param", "embed"}
)


def placeholder(width: str | None, height: str | None) -> str:
    """Return a `data:` SVG that stands where a remote image would have been."""
    w = width if width and width.isdigit() else "120"
    h = height if height and height.isdigit() else "40"
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">'
        f'<rect width="100%" height="100%" fill="#eee" stroke="#888" stroke-dasharray="4"/>'
        '<text x="4" y="16" font-family="sans-serif" font-size="11" fill="#333">'
        "image not loaded</text></svg>"
    )
    return "data:image/svg+xml," + quote(svg)


def inert_css(text: str) -> str:
    """Return CSS that loads nothing: `url(` becomes an invalid token, `@import` goes."""
    return _URL.sub("blocked-url(", _IMPORT.sub("", text))


class _Rewriter(HTMLParser):
    """Re-emits HTML token by token with everything that could run or load taken out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skipping: list[str] = []  # open elements dropped with their content
        self._in_style = False
        self.blocked = 0  # remote loads replaced

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype") and not self._skipping:
            self.out.append("<!DOCTYPE html>")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, closed=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, closed=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], *, closed: bool) -> None:
        if self._skipping:
            if tag == self._skipping[-1] and not closed and tag not in _VOID:
                self._skipping.append(tag)
            return
        if tag in _DROP_WITH_CONTENT:
            if not closed and tag not in _VOID:
                self._skipping.append(tag)
            return
        if tag in _DROP_TAG:
            return
        kept = self._attributes(tag, dict(attrs))
        rendered = "".join(
            f" {name}" if value is None else f' {name}="{html.escape(value)}"'
            for name, value in kept.items()
        )
        self.out.append(f"<{tag}{rendered}{' /' if closed else ''}>")
        self._in_style = tag == "style" and not closed

    def _attributes(self, tag: str, attrs: dict[str, str | None]) -> dict[str, str | None]:
        kept: dict[str, str | None] = {}
        for name, value in attrs.items():
            if name.startswith("on") or name in _DROP_ATTRIBUTES:
                continue
            if name in {"href", "xlink:href"}:
                if tag in _LINKS and value:
                    kept.setdefault("title", f"link to {value}")
                continue  # elsewhere (SVG <use>, <image>) an href loads something
            if name == "src" and tag in _SOURCED:
                if value and value.strip().lower().startswith("data:image/"):
                    kept[name] = value
                else:
                    self.blocked += 1
                    kept[name] = placeholder(attrs.get("width"), attrs.get("height"))
                    kept["title"] = f"remote image not loaded: {value or ''}"
                continue
            if name == "src":
                continue
            kept[name] = inert_css(value) if name == "style" and value else value
        if tag == "img" and "src" not in kept:  # one with only a srcset, say
            self.blocked += 1
            kept["src"] = placeholder(attrs.get("width"), attrs.get("height"))
        return kept

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
            return
        if tag in _DROP_WITH_CONTENT or tag in _DROP_TAG:
            return
        self._in_style = False
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        # A style element's text is CSS, not markup: escaping it would change its meaning,
        # and the tokenizer ends it only at `</style`, which it cannot contain.
        # Inside SVG a style element's text is markup to the browser: `<` is escaped for CSS,
        # so no element can start there.
        css = inert_css(data).replace("<", "\\3c ")
        self.out.append(css if self._in_style else html.escape(data, quote=False))


def inert_html(markup: str) -> str:
    """Return `markup` with everything that could run, submit or load taken out."""
    rewriter = _Rewriter()
    rewriter.feed(markup)
    rewriter.close()
    return "".join(rewriter.out)


def text_document(text: str) -> str:
    """Return a document that shows plain text as it is."""
    style = "white-space:pre-wrap;font-family:monospace;margin:1rem"
    return f'<!DOCTYPE html><pre style="{style}">{html.escape(text)}</pre>'


def frame_document(content: bytes) -> str:
    """Return what the console's frame shows of a message: its HTML made inert, or its text."""
    try:
        message = email.message_from_bytes(content, policy=policy.default)
        part = _first(message, "html", 0)
        if part is not None:
            return inert_html(_text(part))
        part = _first(message, "plain", 0)
        if part is None:
            return text_document("(no text or HTML part to show here; see the raw source)")
        return text_document(_text(part))
    except (RecursionError, LookupError, ValueError, email.errors.MessageError):
        return text_document("(the message could not be decoded; see its raw source)")


def _first(message: Message, subtype: str, depth: int) -> Message | None:
    """Return the first text/`subtype` leaf that is not an attachment."""
    if depth > MAX_DEPTH:
        return None
    if message.is_multipart():
        for part in message.get_payload():
            if isinstance(part, Message) and (found := _first(part, subtype, depth + 1)):
                return found
        return None
    if message.get_content_type() != f"text/{subtype}":
        return None
    if message.get_content_disposition() == "attachment":
        return None
    return message


def _text(part: Message) -> str:
    if isinstance(part, EmailMessage):
        content = part.get_content()
        if isinstance(content, str):
            return content
    payload = part.get_payload(decode=True)
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
