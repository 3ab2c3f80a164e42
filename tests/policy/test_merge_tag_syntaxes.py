"""Merge-tag syntaxes of every common platform, read from whole messages as a reader sees them.

Each syntax is caught in the subject, the From display name, the text part, the HTML part
and a link target of a real MIME message (decoded as admission decodes it, so the HTML to
text conversion is part of what is proved). Each legitimate look-alike (prose percentages
and hyphens, code samples, AMP templates, JSON-LD, Outlook conditional comments, CSS) is
left alone.
"""

from __future__ import annotations

from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from html import escape

import pytest

from gateway.mail.content import decode
from gateway.policy.rules.merge_tags import MergeTags, scan

RULE = MergeTags(id="m", kind="merge_tags")
PLAIN = "Hello,\n\nOur spring range is in store.\n\nThe Shop team"
PAGE = "<html><body><p>Hello,</p><p>Our spring range is in store.</p></body></html>"


def message(
    *,
    subject: str = "Spring range",
    from_name: str = "Shop",
    text: str = PLAIN,
    html: str | None = PAGE,
    parts: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A multipart/alternative message (text, then HTML, then any further parts)."""
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = Address(from_name, addr_spec="news@shop.test")
    mail["To"] = "reader@example.org"
    mail["Subject"] = subject
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    for subtype, body in parts:
        mail.add_alternative(body, subtype=subtype)
    return mail.as_bytes()


def found(raw: bytes) -> list[tuple[str, str, str]]:
    """(what, where, fragment) of every hit of the merge-tag scanner in a message."""
    return [(h.what, h.where, h.fragment) for h in scan(RULE, decode(raw), {})]


def tags(raw: bytes) -> list[tuple[str, str]]:
    """(where, fragment) of every unrendered tag in a message."""
    return [(where, frag) for what, where, frag in found(raw) if what == "merge_tag"]


# platform -> an unrendered tag as that platform writes it
SYNTAXES = {
    "mailchimp": "*|FNAME|*",
    "mailchimp-conditional": "*|IF:VIP|*",
    "marketo": "{{lead.First Name:default=there}}",
    "marketo-velocity": "${lead.FirstName}",
    "salesforce-classic": "{!Contact.FirstName}",
    "exacttarget": "%%First_Name%%",
    "ampscript-inline": "%%=v(@first)=%%",
    "ampscript-block": '%%[ SET @first = AttributeValue("FirstName") ]%%',
    "pardot": "{{Recipient.FirstName}}",
    "pardot-legacy": "%%first_name%%",
    "hubspot": "{{ contact.firstname }}",
    "hubspot-hubl": "{% if contact.company %}",
    "braze": "{{${first_name} | default: 'there'}}",
    "braze-attribute": "{{custom_attribute.${shoe_size}}}",
    "liquid-filters": '{{ first_name | capitalize | default: "friend" }}',
    "klaviyo": "{{ first_name|default:'there' }}",
    "klaviyo-person": "{{ person.first_name }}",
    "mautic": "{contactfield=firstname}",
    "mautic-default": "{contactfield=firstname|there}",
    "mautic-token": "{unsubscribe_url}",
    "campaign-monitor": "[firstname,fallback=there]",
    "campaign-monitor-custom": "[ShoeSize,fallback=]",
    "activecampaign": "%FIRSTNAME%",
    "activecampaign-custom": "%SHOE_SIZE%",
    "sendgrid": "{{first_name}}",
    "sendgrid-legacy": "-first_name-",
    "sendgrid-newsletter": "[%first_name%]",
    "sendgrid-asm": "<%asm_group_unsubscribe_raw_url%>",
    "mailgun": "%recipient.first%",
    "mailgun-underscore": "%recipient_fname%",
    "mailgun-unsubscribe": "%unsubscribe_url%",
    "iterable": "{{firstName}}",
    "iterable-feed": "[[firstName]]",
    "erb": "<%= @user.first_name %>",
    "jinja": "{{ user.name }}",
    "jinja-statement": "{% if user.vip %}",
    "jinja-comment": "{# greeting #}",
    "go-template": "{{.FirstName}}",
    "go-template-spaced": "{{ .Name }}",
}
PLACES = ("subject", "from_name", "text", "html", "link")


def with_tag(place: str, tag: str) -> bytes:
    """A message that holds `tag` in one place only, as the template wrote it there."""
    if place == "subject":
        return message(subject=f"{tag}, spring is here")
    if place == "from_name":
        return message(from_name=f"{tag} at Shop")
    if place == "text":
        return message(text=f"Hello {tag},\n\nOur spring range is in store.")
    if place == "html":  # raw, as an unrendered template leaves it
        return message(html=f"<html><body><p>Hello {tag},</p><p>Our range.</p></body></html>")
    link = f"https://shop.test/spring?who={tag}"
    return message(html=f'<html><body><p><a href="{escape(link)}">Our range</a></p></body></html>')


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("tag", SYNTAXES.values(), ids=SYNTAXES.keys())
def test_each_platform_syntax_is_caught_in_every_visible_place(tag, place):
    assert tags(with_tag(place, tag)) == [(place, tag)]


@pytest.mark.parametrize(
    ("subject", "tag"),
    [
        ("Hola -name-: tus puntos caducan", "-name-"),
        ("Hi -firstname-, your points expire", "-firstname-"),
        ("Bonjour -prenom- !", "-prenom-"),
    ],
)
def test_a_sendgrid_dash_tag_without_underscore_is_caught_after_a_greeting(subject, tag):
    assert tags(message(subject=subject)) == [("subject", tag)]


def test_a_tag_in_the_hidden_preheader_is_caught():
    html = (
        '<html><body><div style="display:none;max-height:0">Hi %FIRSTNAME%, 20% off</div>'
        "<p>Our spring range.</p></body></html>"
    )
    assert tags(message(html=html)) == [("html", "%FIRSTNAME%")]


def test_a_url_encoded_tag_in_a_link_is_caught_decoded():
    html = '<a href="https://shop.test/r?c=%7B%7Breferral_code%7D%7D">Refer a friend</a>'
    assert tags(message(html=html)) == [("link", "{{referral_code}}")]


def test_a_nested_tag_is_reported_once_as_the_outermost():
    # Braze's {{${x}}} holds a ${x}; [[FirstName]] holds a Campaign Monitor [FirstName].
    raw = message(subject="{{${first_name}}} and [[FirstName]]", html=None)
    assert tags(raw) == [("subject", "{{${first_name}}}"), ("subject", "[[FirstName]]")]


@pytest.mark.parametrize(
    "text",
    [
        "Hi ,\n\nOur range.",
        "Hola ,\n\ntus puntos caducan.",
        "Dear  , thank you",
        "Bonjour ,\n\nnotre gamme.",
        "Sehr geehrter , vielen Dank",
        "Gentile , grazie",
        "Hoi , bedankt",
        "Kjære , takk",
        "Hallå , tack",
        "Cześć , dziękujemy",
        "Prezada , obrigado",
    ],
)
def test_a_greeting_before_a_blank_and_a_comma_is_empty_personalisation(text):
    kinds = {what for what, _, _ in found(message(text=text))}
    assert kinds == {"empty_greeting"}


@pytest.mark.parametrize(
    "prose",
    [
        "Hi, Anna! Hola, Ana. Bonjour ! Dear all, hello again.",
        "Sehr geehrter Herr Roth, Cześć Ania, Hei Kari, Gentile cliente,",
        "Hola - te escribimos por tus puntos.",
        "Hi -- quick note before the weekend.",
    ],
)
def test_greetings_with_a_name_or_a_pause_are_not_empty_or_tags(prose):
    assert found(message(text=prose, subject=prose)) == []


# Prose that looks like the narrow syntaxes: percentages, hyphens, brackets, braces.
PROSE = [
    "50% off everything, then another 20% OFF for members: 100% COTTON, 5% ELASTANE.",
    "SAVE 50%OFF TODAY and 20% EXTRA on TENTS%",
    "Between 10%-20% off; 30 %, 40 % and 50 % too.",
    "Our e-mail is well-known and state-of-the-art; a community-based, -based- approach.",
    "Temperatures from -5 to -20 degrees; re-sign-up -today only- for the sale.",
    "Summer sale -today- and -tomorrow- only, a -ish- deal.",
    "Read how-to_use-it and my_file-name_v2 notes.",
    "Prices from $5 {incl. VAT}, footnotes [1] [2] [sic] and a {new} range.",
    "Write to [Email](mailto:help@shop.test) or [FirstName Surname] at the desk.",
    "Contact us: [email\u00a0protected], our {firstname} field and {subject} line.",
    "Our #1 {#hashtag} and a {#} sign; a < 5% fee and 3%> nothing.",
    "Windows keeps it in %APPDATA% or %USERPROFILE%, not %ProgramFiles%.",
    "A *bold* claim | and pipes || and [[1]] double footnotes.",
]


@pytest.mark.parametrize("prose", PROSE)
def test_prose_look_alikes_are_not_tags(prose):
    html = f"<html><body><p>{escape(prose)}</p></body></html>"
    assert found(message(subject=prose[:70], text=prose, html=html)) == []


CODE = (
    "{{ user.name }} {% if vip %} {# note #} <%= @user.first_name %> ${token} "
    "*|FNAME|* %%First_Name%% %FIRSTNAME% -first_name- [[first_name]] {!Contact.Name} "
    "{contactfield=firstname} %recipient.first% [firstname,fallback=x] %s"
)


@pytest.mark.parametrize("element", ["pre", "code", "kbd", "samp", "tt", "var"])
def test_tags_in_html_code_samples_are_not_leaks(element):
    html = (
        f"<html><body><p>Template changes:</p><{element}>{escape(CODE)}</{element}></body></html>"
    )
    assert found(message(html=html)) == []


@pytest.mark.parametrize(
    "text",
    [
        f"Template changes:\n\n```erb\n{CODE}\n```\n\nThat is all.",
        f"Template changes:\n\n    {CODE}\n    <% end %>\n\nThat is all.",
    ],
)
def test_tags_in_text_code_samples_are_not_leaks(text):
    assert found(message(text=text)) == []


def test_an_amp_mustache_template_is_not_a_leak():
    # The AMP part itself is never read; amp-mustache inside the HTML is a <template>.
    amp = (
        '<!doctype html><html ⚡4email><head><script async custom-template="amp-mustache" '
        'src="https://cdn.ampproject.org/v0/amp-mustache-0.2.js"></script></head><body>'
        '<amp-list src="https://shop.test/orders.json" layout="fixed-height" height="80">'
        '<template type="amp-mustache"><p>{{#items}}{{name}}: {{status}}{{/items}}</p>'
        "</template></amp-list></body></html>"
    )
    html = (
        "<html><body><p>Your order is on its way.</p>"
        '<template type="amp-mustache"><a href="{{url}}">{{name}}</a></template>'
        "</body></html>"
    )
    assert found(message(html=html, parts=(("x-amp-html", amp),))) == []


def test_json_ld_conditional_comments_and_css_are_not_leaks():
    html = """<html><head>
<style>@media (max-width:600px){.c{width:100% !important}} a[x-apple-data-detectors]{color:inherit}
.btn{-webkit-text-size-adjust:100%;-ms-text-size-adjust:100%} td{mso-line-height-rule:exactly}</style>
<script type="application/ld+json">{"@context":"http://schema.org","@type":"Order",
"acceptedOffer":[[{"@type":"Offer","price":"20.00","itemOffered":{"@type":"Product"}}]],
"potentialAction":{"@type":"TrackAction","target":"https://shop.test/track?o=%25ORDER%25"}}</script>
</head><body>
<!--[if mso]><v:roundrect href="https://shop.test/track" arcsize="10%"><center>Track</center>
</v:roundrect><![endif]-->
<!--[if !mso]><!-- --><a href="https://shop.test/track" style="width:100%">Track</a><!--<![endif]-->
<p style="margin:0;width:100%;-webkit-border-radius:4px">Your order is on its way.</p>
</body></html>"""
    assert found(message(html=html)) == []
