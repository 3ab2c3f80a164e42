"""A pipelined SMTP load generator sending personalised newsletters: every body differs.

smtp-source sends one file, so every message of a run has the same body and sendbrake reads
its content once. Real marketing mail is personalised: this client sends one legitimate
campaign (declared size true, English, category newsletter) whose every message has its
own greeting name and its own link token in every link of both alternatives
(multipart/alternative, text/plain and text/html, 7bit, about 5 KB), a unique recipient,
Message-ID and List-Unsubscribe token.

It pipelines (RFC 2920), so round trips do not make it the limit: a session sends MAIL,
RCPT and DATA in one write; after the 354 it sends the message and, in the same write,
the next message's MAIL, RCPT and DATA. Each reply to the end of DATA is timed from the
moment the final "<CRLF>.<CRLF>" has been handed to the socket. Standard library only
(uvloop when installed). Run as its own process, so its CPU time is its own:

    python bench/personal_client.py --port 2525 --messages 20000 --sessions 50 --campaign k
    -> one JSON line on stdout: seconds, rate, p50/p99/max latency, CPU seconds used
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from array import array

HOST = "127.0.0.1"
SENDER = "news@brand.bench.test"
RCPT_DOMAIN = "bench.test"
FIRST = ("Ada", "Bruno", "Chiara", "Dmitri", "Esther", "Farid", "Grace", "Hiroshi", "Ines",
         "Jonas", "Keiko", "Liam", "Mira", "Nils", "Olga", "Pedro", "Quinn", "Rosa")  # fmt: skip
LAST = ("Novak", "Okafor", "Petrov", "Quist", "Rossi", "Sato", "Tanaka", "Umar", "Varga",
        "Weber", "Xu", "Yilmaz", "Zhou", "Andersen", "Bauer", "Costa", "Dubois")  # fmt: skip
# The campaign's template: slots replaced per message (ASCII, 7bit: no encoding splits them).
NAME, TOKEN, RCPT, MSGID = "{NAME}", "{TOKEN}", "{RCPT}", "{MSGID}"
SECTIONS = (
    (
        "New reporting screens",
        (
            "The reporting screens were rebuilt from the ground up this month. Charts load"
            " faster, filters remember what you chose last time, and every table can be"
            " exported to a spreadsheet with one click."
        ),
    ),
    (
        "Faster exports for large accounts",
        (
            "Accounts with more than a million records can now export their data in the"
            " background. We send you a message when the file is ready, so you no longer need"
            " to keep the browser window open while it runs."
        ),
    ),
    (
        "Inviting colleagues",
        (
            "Inviting colleagues to a shared workspace takes a single step now. Type their"
            " address, choose what they may see, and they get a short message with a link that"
            " brings them straight to the right place."
        ),
    ),
    (
        "From the help centre",
        (
            "Our support team answered more questions than ever this month, and the most common"
            " ones are now covered in the help centre with short videos. Reply to this message"
            " if something is unclear; every answer is read by a person on the product team."
        ),
    ),
    (
        "Permission presets",
        (
            "If you manage several teams, the new permission presets save a lot of clicking."
            " Pick a preset for editors, reviewers or guests, adjust it once, and every new"
            " member of that group gets the same rights from the first day."
        ),
    ),
    (
        "Our warehouse moved",
        (
            "Our warehouse in the north moved to a larger building this month, and orders placed"
            " before noon now leave the same day. The new packaging uses less plastic and fits"
            " through most letterboxes."
        ),
    ),
)


def template(campaign: str, declared: int) -> bytes:
    """The campaign's message with its per-message slots, CRLF lines, about 5 KB."""
    web = f"https://www.bench.test/letter/{campaign}?t={TOKEN}"
    text = [f"Dear {NAME},", "", "Here is what changed in the product this month.", ""]
    html = [
        "<html><head><style>body { font-family: sans-serif; color: #222 }",
        ".box { padding: 12px; border: 1px solid #ddd }</style></head><body>",
        '<table class="box"><tr><td>',
        f"<p>Dear {NAME},</p>",
        "<p>Here is what changed in the product this month.</p>",
    ]
    for number, (title, paragraph) in enumerate(SECTIONS, 1):
        link = f"https://www.bench.test/news/{number}?t={TOKEN}"
        text += [title, "", *_wrap(paragraph), "", f"Read more: {link}", ""]
        html += [f"<h2>{title}</h2>", "<p>", *_wrap(paragraph), "</p>"]
        html += [f'<p><a href="{link}">Read more</a></p>']
    unsubscribe = f"https://www.bench.test/unsubscribe?t={TOKEN}"
    text += [f"Read it on the web: {web}", f"Unsubscribe: {unsubscribe}"]
    html += [
        f'<p><a href="{web}">Read it on the web</a> |',
        f'<a href="{unsubscribe}">Unsubscribe</a></p>',
        f'<img src="https://img.bench.test/open.gif?t={TOKEN}" alt="" width="1" height="1">',
        "</td></tr></table></body></html>",
    ]
    boundary = "=_bench_boundary_0123456789"
    headers = [
        f"From: Brand news <{SENDER}>",
        f"To: <{RCPT}>",
        "Subject: Product letter, December issue",
        "Date: Wed, 02 Dec 2026 08:00:00 +0000",
        f"Message-ID: <{MSGID}@bench.test>",
        f"X-Campaign-ID: {campaign}",
        f"X-Declared-Size: {declared}",
        "X-Campaign-Locale: en",
        "X-Campaign-Category: newsletter",
        f"List-Unsubscribe: <{unsubscribe}>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    part = "Content-Type: text/{}; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n"
    lines = [
        *headers,
        "",
        f"--{boundary}",
        part.format("plain"),
        *text,
        f"--{boundary}",
        part.format("html"),
        *html,
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode()


def _wrap(paragraph: str, width: int = 76) -> list[str]:
    out, line = [], ""
    for word in paragraph.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*out, line] if line else out


class Messages:
    """Every message's DATA payload (dot-stuffed, with the final dot) from the template."""

    def __init__(self, campaign: str, declared: int, *, local: str = "p") -> None:
        raw = template(campaign, declared).replace(b"\r\n.", b"\r\n..") + b".\r\n"
        self.pieces: list[bytes | str] = []
        for chunk in _split(raw, (NAME, TOKEN, RCPT, MSGID)):
            self.pieces.append(chunk)
        self.campaign = campaign
        self.local = local

    def rcpt(self, n: int) -> str:
        return f"{n}{self.local}@{RCPT_DOMAIN}"

    def payload(self, n: int) -> bytes:
        name = f"{FIRST[n % len(FIRST)]} {LAST[(n // len(FIRST)) % len(LAST)]}".encode()
        values = {
            NAME: name,
            TOKEN: f"{(n * 2654435761) & 0xFFFFFFFF:08x}{n:06d}".encode(),
            RCPT: self.rcpt(n).encode(),
            MSGID: f"{n}.{self.campaign}".encode(),
        }
        return b"".join(p if isinstance(p, bytes) else values[p] for p in self.pieces)


def _split(raw: bytes, slots: tuple[str, ...]) -> list[bytes | str]:
    """Split `raw` into literal bytes and slot names, in order."""
    out: list[bytes | str] = [raw]
    for slot in slots:
        marker = slot.encode()
        parts: list[bytes | str] = []
        for piece in out:
            if isinstance(piece, str):
                parts.append(piece)
                continue
            chunks = piece.split(marker)
            for i, chunk in enumerate(chunks):
                if i:
                    parts.append(slot)
                parts.append(chunk)
        out = parts
    return out


class ReplyError(RuntimeError):
    """The server answered something the client did not expect."""


async def _reply(reader: asyncio.StreamReader, expect: int) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise ReplyError(f"connection closed while waiting for {expect}")
        if line[3:4] != b"-":
            break
    if int(line[:3]) != expect:
        raise ReplyError(f"expected {expect}, got {line.decode(errors='replace').strip()}")


def _envelope(messages: Messages, n: int) -> bytes:
    return f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{messages.rcpt(n)}>\r\nDATA\r\n".encode()


async def _session(
    port: int, messages: Messages, jobs: itertools.count, total: int, out: array[float]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        await _reply(reader, 220)
        writer.write(b"EHLO load.bench.test\r\n")
        await _reply(reader, 250)
        n = next(jobs)
        if n <= total:
            writer.write(_envelope(messages, n))
        while n <= total:
            for code in (250, 250, 354):
                await _reply(reader, code)
            after = next(jobs)
            follow = _envelope(messages, after) if after <= total else b""
            writer.write(messages.payload(n) + follow)
            await writer.drain()
            sent = time.perf_counter()
            await _reply(reader, 250)
            out.append(time.perf_counter() - sent)
            n = after
        writer.write(b"QUIT\r\n")
        await _reply(reader, 221)
    finally:
        writer.close()


async def _run(port: int, messages: Messages, total: int, sessions: int) -> dict[str, float]:
    jobs = itertools.count(1)
    latencies: array[float] = array("d")
    cpu, started = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for _ in range(sessions):
            tasks.create_task(_session(port, messages, jobs, total, latencies))
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)

    def rank(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "messages": len(ordered),
        "seconds": seconds,
        "rate": len(ordered) / seconds,
        "p50_ms": rank(0.5),
        "p99_ms": rank(0.99),
        "max_ms": 1000 * ordered[-1],
        "cpu_s": time.process_time() - cpu,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--campaign", required=True, help="X-Campaign-ID (unique per measurement)")
    p.add_argument("--local", default="p", help="local part after the recipient's number")
    args = p.parse_args()
    messages = Messages(args.campaign, args.messages, local=args.local)
    try:
        import uvloop  # noqa: PLC0415 - optional; the project's venv has it

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(_run(args.port, messages, args.messages, args.sessions))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
