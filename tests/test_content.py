"""MIME decoding for content checks: what a reader sees, and what cannot be read."""

from __future__ import annotations

import base64
import random
import re
from email.message import EmailMessage

from gateway.mail.content import content_key, decode
from gateway.mail.html_text import html_to_text, split_code, tidy
from tests.mail import build


def test_quoted_printable_text_and_base64_html_are_decoded():
    raw = build(subject="Grüße", text="Schöne Grüße aus Köln " * 5, html="<p>Hallo <b>Welt</b></p>")
    assert b"Content-Transfer-Encoding: quoted-printable" in raw
    assert b"Content-Transfer-Encoding: base64" in raw
    doc = decode(raw)
    assert doc.subject == "Grüße"
    assert doc.text.startswith("Schöne Grüße aus Köln")
    assert doc.html == "Hallo Welt"
    assert doc.problems == ()


def test_rfc2047_subject_and_from_display_name_are_decoded():
    raw = (
        b"From: =?utf-8?q?Ren=C3=A9e_Dupont?= <renee@shop.test>\r\n"
        b"Reply-To: Sales <sales@shop.test>\r\n"
        b"Subject: =?iso-8859-1?q?Caf=E9?= =?utf-8?b?IOKYlQ==?=\r\n\r\nBonjour\r\n"
    )
    doc = decode(raw)
    assert doc.subject == "Café ☕"
    assert doc.from_name == "Renée Dupont"
    assert doc.senders == (("from", "renee@shop.test"), ("reply-to", "sales@shop.test"))


def test_nested_multiparts_are_walked_and_attachments_skipped():
    inner = EmailMessage()
    inner.set_content("plain words")
    inner.add_alternative("<p>html words</p>", subtype="html")
    outer = EmailMessage()
    outer["Subject"] = "nested"
    outer.set_content("intro")
    outer.make_mixed()
    outer.attach(inner)
    outer.add_attachment("attached {{not read}}", filename="notes.txt")
    doc = decode(outer.as_bytes())
    assert "plain words" in doc.text
    assert "intro" in doc.text
    assert "{{not read}}" not in doc.text
    assert doc.html == "html words"


def test_mislabelled_utf8_in_a_us_ascii_part_is_read_not_flagged():
    raw = b"Subject: x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n"
    doc = decode(raw)
    assert doc.text == "café"
    assert doc.problems == ()


def test_latin1_part_is_decoded_with_its_charset():
    raw = b"Subject: x\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nGr\xfc\xdfe\r\n"
    assert decode(raw).text == "Grüße"


def test_unknown_charset_is_a_problem_not_a_pass():
    raw = b"Subject: x\r\nContent-Type: text/plain; charset=x-nope\r\n\r\nhello\r\n"
    doc = decode(raw)
    assert doc.problems == ("part 1 (text/plain): unknown charset 'x-nope'",)
    assert doc.text == ""


def test_damaged_base64_is_a_problem():
    raw = (
        b"Subject: x\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"<p>hello</p>")[:-3]
        + b"!!\r\n"
    )
    [problem] = decode(raw).problems
    assert problem.startswith("part 1 (text/html): invalid base64")


def test_bytes_that_no_charset_decodes_are_a_problem():
    raw = b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xff\xfe\xfa\r\n"
    assert decode(raw).problems == ("part 1 (text/plain): the body is not valid utf-8",)


def test_unknown_transfer_encoding_is_a_problem():
    raw = b"Subject: x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uue\r\n\r\nbegin 644\r\n"
    assert decode(raw).problems == ("part 1 (text/plain): unknown transfer encoding 'x-uue'",)


def test_a_message_without_any_text_part_is_a_problem():
    raw = b"Subject: x\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0=\r\n"
    assert decode(raw).problems == ("the message has no text/plain or text/html part to check",)


def test_a_multipart_without_boundary_is_a_problem():
    raw = b"Subject: x\r\nContent-Type: multipart/alternative\r\n\r\nno boundary here\r\n"
    assert any("boundary" in p for p in decode(raw).problems)


def test_an_undecodable_encoded_word_in_the_subject_is_a_problem():
    doc = decode(b"Subject: =?x-bogus?q?hi?=\r\n\r\nhello\r\n")
    assert doc.problems == ("the Subject header has an encoded-word that could not be decoded",)


def test_raw_non_utf8_bytes_in_a_header_are_a_problem():
    doc = decode(b"Subject: caf\xe9\r\n\r\nhello\r\n")
    assert doc.problems == ("the Subject header has bytes that are not UTF-8",)


def test_html_text_drops_style_script_head_and_comments_keeps_alt_and_preheader():
    shown = html_to_text(
        "<html><head><title>T {{x}}</title><style>p { color: red }</style></head><body>"
        "<!-- {{hidden}} --><script>var a = '{{b}}';</script>"
        '<div style="display:none">Preheader text</div>'
        '<p>Hello <img src="a.png" alt="Logo"> world</p></body></html>'
    )
    assert shown.text == "Preheader text\n\nHello Logo world"
    assert "{{" not in shown.text


def test_html_code_samples_are_kept_apart_from_prose():
    shown = html_to_text(
        "<p>Write <code>{{ name }}</code> here:</p><pre>{% if x %}y{% endif %}</pre>"
    )
    assert shown.text == "Write here:"
    assert "{{ name }}" in shown.code
    assert "{% if x %}" in shown.code


def test_html_links_are_returned_url_decoded():
    shown = html_to_text(
        '<a href="https://x.test/?u=%7B%7Bid%7D%7D">go</a><img src="p.gif?e=*%7CEMAIL%7C*">'
    )
    assert shown.links == ("https://x.test/?u={{id}}", "p.gif?e=*|EMAIL|*")


def test_empty_span_leaves_the_visible_gap_of_an_empty_merge_field():
    assert html_to_text("<p>Hi <span></span>,</p>").text == "Hi ,"


def test_plain_text_code_is_fenced_or_indented_after_a_blank_line():
    text = (
        "Intro:\n\n    {{ indented }}\n\nmid\n```\n{{ fenced }}\n```\n"
        "wrapped line\n    continues {{ here }}\n"
    )
    prose, code = split_code(text)
    assert "{{ indented }}" in code
    assert "{{ fenced }}" in code
    assert "continues {{ here }}" in prose  # an indented continuation of a paragraph is prose


def test_content_key_ignores_per_recipient_fields_and_keeps_what_decode_reads():
    def message(*fields: bytes, body: bytes = b"Hello\r\n") -> bytes:
        return b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body

    common = (b"From: News <news@shop.test>", b"Subject: Spring", b"Content-Type: text/plain")
    key = content_key(message(b"To: a@x.test", b"Message-ID: <1@x>", *common))
    for_b = (b"To: b@x.test", b"Message-ID: <2@x>", b"List-Unsubscribe: <https://u.test/b>")
    assert content_key(message(*for_b, *common)) == key
    changed = [
        message(b"To: a@x.test", *common, body=b"Hello Anna\r\n"),
        message(b"To: a@x.test", *common[:1], b"Subject: Summer", *common[2:]),
        message(b"To: a@x.test", *common[:2], b"Content-Type: text/html"),
        message(b"To: a@x.test", *common, b"Content-Transfer-Encoding: base64"),
        message(b"To: a@x.test", *common, b"Reply-To: rep@shop.test"),
        # not a field to the email parser: it ends the header block there
        message(b"To a@x.test", *common),
    ]
    assert len({key, *map(content_key, changed)}) == len(changed) + 1
    broken = message(b"To a@x.test", *common)
    assert decode(broken) != decode(message(b"To: a@x.test", *common))  # why it must count


def test_content_key_counts_every_field_after_a_line_that_ends_the_header_block():
    # To the email parser the header block ends at the first line that is not a field:
    # what follows it, per-recipient fields too, is body a reader sees.
    def message(name: bytes) -> bytes:
        return (
            b"Subject: Spring\r\nnot a field\r\nX-Greeting: Hi " + name + b",\r\n"
            b"Content-Type: text/plain\r\n\r\nHello\r\n"
        )

    anna, leaked = message(b"Anna"), message(b"{{FirstName}}")
    assert "{{FirstName}}" in decode(leaked).text  # the parser reads it as body
    assert content_key(anna) != content_key(leaked)


def test_tidy_collapses_blanks_as_its_plain_definition_does():
    # The definition: every run of blanks within a line is one space, no blank at either
    # end of a line, at most one empty line in a row, nothing around the whole.
    def plainly(text: str) -> str:
        text = re.sub(r"[ \t\r\f\v\u00a0\u200b\u200c\u200d\u2060\ufeff]+", " ", text)
        return re.sub(r"\n{3,}", "\n\n", re.sub(r" ?\n ?", "\n", text)).strip()

    rnd = random.Random(18)
    alphabet = " \t\r\f\v\u00a0\u200b\ufeff\n\nab"
    samples = ["a \t b\u00a0\u00a0c\n \n\n\n d ", "\t", " \n \n ", "a\u00a0 b \u00a0c", "a b"]
    samples += ["".join(rnd.choices(alphabet, k=rnd.randint(0, 40))) for _ in range(5000)]
    assert [tidy(s) for s in samples] == [plainly(s) for s in samples]


def test_the_text_of_several_html_parts_is_joined_with_one_empty_line():
    parts = ["<p>  </p>", "<p>First  part</p>", "<p>Second\n\n\n\npart </p>"]
    body = "".join(f"--b\r\nContent-Type: text/html\r\n\r\n{html}\r\n" for html in parts).encode()
    raw = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body + b"--b--\r\n"
    assert decode(raw).html == "First part\n\nSecond\n\npart"
