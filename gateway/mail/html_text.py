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
from html import unescape
from urllib.parse import unquote

# Elements whose content a mail client never displays.
# Elements whose content is shown as code (kept out of prose checks).
_CODE = frozenset({"pre", "code", "kbd", "samp", "tt", "var"})
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
_BLANK = " \t\r\f\v\u00a0\u200b\u200c\u200d\u2060\ufeff"  # within a line
# Runs of blanks that are not already one plain space (most are: the one between two
# words, which is left alone rather than replaced by itself).
_SPACES = re.compile(f"[{_BLANK}]{{2,}}|[{_BLANK[1:]}]")
_AROUND_NEWLINES = re.compile(r" \n ?|\n ")
_BLANKS = re.compile(r"\n{3,}")
# The markup is read with a few whole-text regular-expression passes rather than a parser
# calling Python for every tag: a 100 KB newsletter has thousands of tags, and this is ten
# times faster than html.parser while as tolerant (what is not a tag is text).
_TAG = r"(?:[^>\"']|\"[^\"]*\"|'[^']*')*"  # the inside of a tag; quoted values may hold ">"
_HIDDEN_RE = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<(style|script|title|template|noscript|xml)\b" + _TAG + r">.*?(?:</\1\s*>|\Z)"
    r"|<head\b" + _TAG + r">.*?(?=</head\s*>|<body\b|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_CODE_RE = re.compile(
    r"<(" + "|".join(sorted(_CODE)) + r"|xmp)\b" + _TAG + r">(.*?)(?:</\1\s*>|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_LINK_RE = re.compile(
    r"""<[a-z]"""
    r"""[^>]*?\b(?:href|src|background|action)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""",
    re.IGNORECASE,
)
_ALT_RE = re.compile(
    r"""<img\b[^>]*?\balt\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""" + _TAG + ">",
    re.IGNORECASE,
)
_BLOCK_RE = re.compile(r"</?(?:" + "|".join(sorted(_BLOCK)) + r")\b" + _TAG + ">", re.IGNORECASE)
_ANY_TAG_RE = re.compile(r"</?[A-Za-z][^\s/>]*" + _TAG + r">|<![^>]*>|<\?[^>]*>")


@dataclass(frozen=True, slots=True)
class HtmlText:
    """What an HTML part shows: prose, code samples and link targets."""

    text: str
    code: str
    links: tuple[str, ...]


def tidy(text: str) -> str:
    """Collapse runs of blanks within lines and of empty lines; strip each line."""
    text = _AROUND_NEWLINES.sub("\n", _SPACES.sub(" ", text))
    return _BLANKS.sub("\n\n", text).strip()


def html_to_text(html: str) -> HtmlText:
    """Return the visible text, the code samples and the link targets of an HTML document."""
    shown = _HIDDEN_RE.sub(" ", html)
    links = [unquote(unescape(a or b or c).strip()) for a, b, c in _LINK_RE.findall(shown)]
    samples: list[str] = []

    def code(match: re.Match[str]) -> str:
        samples.append(_ANY_TAG_RE.sub("", match.group(2)))
        return " "  # the sample leaves the prose; the words around it stay apart

    prose = _CODE_RE.sub(code, shown)
    prose = _ALT_RE.sub(lambda m: f" {m.group(1) or m.group(2) or m.group(3)} ", prose)
    prose = _ANY_TAG_RE.sub("", _BLOCK_RE.sub("\n", prose))
    return HtmlText(
        text=tidy(unescape(prose)),
        code=tidy(unescape("\n".join(samples))),
        links=tuple(dict.fromkeys(link for link in links if link)),
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
