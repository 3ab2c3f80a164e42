"""What the console's frame shows of a message: everything that could run or load is gone."""

from __future__ import annotations

from gateway.ops.console.render import frame_document, inert_css, inert_html
from tests.mail import build, message


def test_scripts_frames_and_document_level_tags_are_dropped_with_their_content():
    shown = inert_html(
        "<head><base href='https://x.test/'><meta http-equiv=refresh content='0;url=https://x.test'>"
        "<link rel=stylesheet href=https://x.test/a.css><title>T</title></head>"
        "<p>keep</p><script>steal()</script><iframe src=https://x.test><p>inside</p></iframe>"
        "<object data=https://x.test><embed src=https://x.test></object><p>after</p>"
    )
    assert shown == "<head></head><p>keep</p><p>after</p>"


def test_event_handlers_and_loading_attributes_are_dropped():
    shown = inert_html(
        '<body onload="go()"><td background="https://x.test/b.png" onclick="go()">c</td>'
        '<video poster="https://x.test/p.png"></video><a ping="https://x.test/p">x</a></body>'
    )
    assert "on" not in shown.replace("<body>", "").replace("</body>", "")
    assert "x.test" not in shown


def test_remote_images_become_placeholders_that_name_their_source():
    shown = inert_html(
        '<img src="https://cdn.test/logo.png" width="120" height="40" alt="Logo">'
        '<img srcset="https://cdn.test/2x.png 2x" alt="set">'
        '<img src="data:image/png;base64,iVBORw0KGgo=" alt="inline">'
    )
    assert shown.count('src="data:image/svg+xml,') == 2
    assert 'title="remote image not loaded: https://cdn.test/logo.png"' in shown
    assert "srcset" not in shown
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in shown  # an inline image stays
    assert 'alt="Logo"' in shown


def test_links_keep_their_text_and_show_their_target_but_cannot_be_followed():
    shown = inert_html(
        '<a href="https://shop.test/offer">Offer</a><a href="javascript:go()">Win</a>'
        '<svg><use href="https://x.test/s.svg#a"/></svg>'
    )
    assert "href" not in shown
    assert '<a title="link to https://shop.test/offer">Offer</a>' in shown
    assert "x.test" not in shown


def test_styles_load_nothing_and_cannot_open_markup():
    assert inert_css("@import url(a.css); b { background: URL( x.png ) }") == (
        " b { background: blocked-url( x.png ) }"
    )
    shown = inert_html("<svg><style><img src=https://x.test/p></style></svg>")
    assert "<img" not in shown
    assert '<div style="background: blocked-url(https://x.test/b)">' in inert_html(
        '<div style="background: url(https://x.test/b)">'
    )


def test_a_text_message_is_shown_as_escaped_text_and_the_html_part_wins_over_it():
    plain = frame_document(message(body="<b>not bold</b> & more"))
    assert "&lt;b&gt;not bold&lt;/b&gt; &amp; more" in plain
    both = frame_document(build(subject="S", text="text part", html="<p>html part</p>"))
    assert "<p>html part</p>" in both
    assert "text part" not in both


def test_a_part_nested_past_the_depth_limit_is_not_shown_and_the_frame_says_so():
    nested = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
        for i in range(30)
    )
    content = (
        b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
        + nested
        + b"--b30\r\nContent-Type: text/html\r\n\r\n<p>deep</p>\r\n"
    )
    shown = frame_document(content)
    assert "deep" not in shown
    assert "no text or HTML part to show here" in shown
