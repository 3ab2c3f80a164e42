"""The closings of a message body: the lines where a sender signs.

Owns what the signature rule reads as a closing: a valediction ("Thanks,", "Best regards,",
"Viele Grüße", ...) with the names on its line or the short lines under it, a dash line
("— Jack"), the lines after a `-- ` signature delimiter. It knows no identities.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_CLOSING = re.compile(
    r"^(?:many thanks|thanks so much|thanks again|thank you|thanks|best wishes|best regards|"
    r"kind regards|warm regards|warmest regards|regards|all the best|best|cheers|sincerely|"
    r"yours truly|yours|warmly|with love|love|talk soon|see you soon|until next time|"
    r"with gratitude|xoxo|gracias|saludos|un saludo|atentamente|merci|cordialement|"
    r"bien à vous|à bientôt|viele grüße|liebe grüße|beste grüße|mit freundlichen grüßen|"
    r"grazie|cordiali saluti|a presto|obrigado|obrigada|abraços|um abraço)\b[\s,.!:;—–-]*(.*)$",
    re.IGNORECASE,
)
# "— Jack", "-- Jane", "~ Ev", "-Jack"; "- item" with a blank is a list, not a closing.
_DASH = re.compile(r"^(?:(?:—|–|--|~)\s*|-(?=[A-Z]))(\S.{0,60})$")
_SIG_DELIMITER = "-- "
NAME_LINE = 60  # a line longer than this is prose, not a name under a closing
NAMES_AFTER = 2  # lines after a closing phrase that may hold the names


@dataclass(frozen=True, slots=True)
class Closing:
    """A closing of the body: its lines as written, and the part that may hold names."""

    text: str
    names: str


def closings(body: str) -> Iterator[Closing]:
    """Yield the sign-off regions of a body: a closing phrase and the names under it."""
    lines = [line.strip() for line in body.split("\n")]
    for index, line in enumerate(lines):
        if line == _SIG_DELIMITER.strip():
            after = "\n".join(entry for entry in lines[index + 1 : index + 4] if entry)
            yield Closing(after, after)
        elif dash := _DASH.match(line):
            yield Closing(line, dash.group(1))
        elif closing := _CLOSING.match(line):
            rest = closing.group(1).strip()
            if len(rest) > NAME_LINE or (rest and not _looks_like_names(rest)):
                continue  # "Thanks for reading our newsletter this week!" is prose
            names = _names_under([rest] if rest else [], lines[index + 1 :])
            if names:
                yield Closing(" / ".join([line, *names[1 if rest else 0 :]]), "\n".join(names))


def _names_under(names: list[str], following: list[str]) -> list[str]:
    """Add the short lines under a closing phrase ("Jane Doe", "Co-founder") to `names`."""
    for line in following:
        if not line:
            if names:
                break
            continue
        if len(line) > NAME_LINE or len(names) > NAMES_AFTER:
            break
        names.append(line)
    return names


def _looks_like_names(text: str) -> bool:
    """Tell whether the rest of a closing line reads as names ("Biz, Ev & Jack")."""
    return not re.search(r"[.?]\s|[?]$", text) and len(text.split()) <= 8
