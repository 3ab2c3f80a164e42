"""A personalised campaign's copies: every recipient's own greeting and link token."""

from __future__ import annotations

NAMES = ("Ada Novak", "Bruno Okafor", "Chiara Petrov", "Dmitri Quist", "Esther Rossi")
SECTION = (
    "The reporting screens were rebuilt from the ground up this month. Charts load faster,\n"
    "filters remember what you chose last time, and every table can be exported to a\n"
    "spreadsheet with one click."
)
HELP = (
    "Our support team answered more questions than ever this month, and the most common\n"
    "ones are now covered in the help centre with short videos. Reply to this message if\n"
    "something is unclear; every answer is read by a person on the product team."
)


def copy(n: int, *, greeting: str | None = None, section: str = SECTION) -> tuple[str, bytes]:
    """Recipient n's copy: its own name and link token, text and HTML alternatives."""
    rcpt = f"reader{n}@example.org"
    token = f"{n * 7919:010d}"
    hello = greeting if greeting is not None else f"Dear {NAMES[n % len(NAMES)]} {n},"
    link = f"https://www.shop.test/news/1?t={token}"
    text = f"{hello}\n\n{section}\n\nRead more: {link}\n\n{HELP}\n"
    html = (
        f"<html><body><p>{hello}</p>\n<p>{section}</p>\n"
        f'<p><a href="{link}">Read more</a></p>\n<p>{HELP}</p></body></html>\n'
    )
    raw = (
        "From: Shop news <news@shop.test>\r\n"
        f"To: <{rcpt}>\r\n"
        "Subject: Product letter, December issue\r\n"
        f"Message-ID: <{n}.letter@shop.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b0"\r\n'
        "\r\n--b0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"{text}\r\n--b0\r\n"
        "Content-Type: text/html; charset=us-ascii\r\n\r\n"
        f"{html}\r\n--b0--\r\n"
    )
    return rcpt, raw.replace("\n", "\r\n").replace("\r\r\n", "\r\n").encode()
