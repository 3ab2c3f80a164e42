"""Mail for tests: `message`, a minimal RFC 5322 message built from headers and a body;
`build`, realistic marketing mail (multipart/alternative with a quoted-printable text part
and a base64 HTML part with <style>, a preheader, a layout table and a footer, as ESPs
send it); and `addresses`, numbered recipients."""

from __future__ import annotations

import html as html_module
from email.message import EmailMessage
from email.policy import SMTP

STYLE = """
  body { margin: 0; padding: 0; background: #f4f4f4; font-family: Helvetica, Arial, sans-serif; }
  .wrapper { width: 100%; table-layout: fixed; }
  .content { max-width: 600px; margin: 0 auto; background: #ffffff; }
  .button a { display: inline-block; padding: 12px 24px; color: #fff !important; }
  @media only screen and (max-width: 600px) { .content { width: 100% !important; } }
"""


def html_page(body_html: str, *, preheader: str = "", title: str = "Newsletter") -> str:
    """Wrap paragraphs in the table layout newsletter builders produce."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html_module.escape(title)}</title>
<style type="text/css">{STYLE}</style>
<!--[if mso]><style>table {{border-collapse: collapse;}}</style><![endif]-->
</head><body>
<div style="display:none;max-height:0;overflow:hidden">{preheader}</div>
<table role="presentation" class="wrapper" width="100%"><tr><td align="center">
<table role="presentation" class="content"><tr><td style="padding: 24px">
<img src="https://cdn.shop.test/logo.png" alt="Shop" width="120">
{body_html}
</td></tr>
<tr><td style="font-size: 12px; color: #888">
<p>You receive this because you signed up at shop.test.
<a href="https://shop.test/unsubscribe?u=8f2a1c">Unsubscribe</a> |
<a href="https://shop.test/preferences">Preferences</a></p>
<p>Shop Ltd, 1 Market Street, Springfield</p>
</td></tr></table>
</td></tr></table>
</body></html>"""


def paragraphs_html(text: str) -> str:
    """Turn blank-line separated text into <p> elements (line breaks kept as <br>)."""
    parts = []
    for block in text.strip().split("\n\n"):
        lines = "<br>\n".join(html_module.escape(line) for line in block.split("\n"))
        parts.append(f"<p>{lines}</p>")
    return "\n".join(parts)


def build(
    *,
    subject: str,
    text: str,
    html: str | None = None,
    sender: str = "Shop <news@shop.test>",
    to: str = "you@example.org",
    headers: dict[str, str] | None = None,
    text_cte: str = "quoted-printable",
    html_cte: str = "base64",
) -> bytes:
    """A multipart/alternative message; `html` defaults to the text as paragraphs."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text, cte=text_cte)
    body = html if html is not None else html_page(paragraphs_html(text), title=subject)
    message.add_alternative(body, subtype="html", cte=html_cte)
    return message.as_bytes(policy=SMTP)


def message(subject: str = "Spring sale", body: str = "Hello!", **headers: str) -> bytes:
    """A minimal message; `X_Campaign_ID="k"` becomes the header `X-Campaign-ID: k`."""
    lines = ["From: News <news@shop.test>", "To: you@example.org", f"Subject: {subject}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode("utf-8")


def addresses(prefix: str, count: int) -> list[str]:
    """`count` distinct recipients: prefix0@example.org, prefix1@example.org, ..."""
    return [f"{prefix}{i}@example.org" for i in range(count)]
