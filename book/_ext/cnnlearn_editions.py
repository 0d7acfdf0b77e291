"""Sphinx extension: every page links to the same page in the other edition.

The English site is ``_build/html``, the Chinese one ``_build/html/zh`` (see
:func:`cnnlearn.book.build_zh_site`), with the same page names, so the link is
the page's own name under the other edition's root. ``cnnlearn_edition`` in
``conf`` says where that root is from the site's root (``other_root``: ``"zh/"``
for English, ``"../"`` for Chinese), the link's ``label``, its ``hreflang``, and
the pages the other edition lacks (``skip``: the Chinese glossary).
sphinx-book-theme has no language switcher (executablebooks/sphinx-book-theme
#449), so the link goes at the top of each page's body, with a ``<link
rel="alternate" hreflang>`` in its head for search engines.
"""

from __future__ import annotations

from html import escape

__all__ = ["add_link", "edition_link", "setup"]


def edition_link(pagename: str, edition: dict) -> str:
    """The href of ``pagename`` in the other edition, relative to the page."""
    up = "../" * pagename.count("/")
    return f"{up}{edition['other_root']}{pagename}.html"


def add_link(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """``html-page-context``: the link on top of the body, the alternate in the
    head; nothing without ``cnnlearn_edition``."""
    edition = app.config.cnnlearn_edition
    if not edition or pagename in edition.get("skip", ()):
        return
    href = escape(edition_link(pagename, edition))
    lang = escape(edition["hreflang"])
    link = (
        f'<a class="cnnlearn-edition-link reference external" href="{href}" '
        f'hreflang="{lang}" lang="{lang}">{escape(edition["label"])}</a>'
    )
    style = "text-align: right; margin: 0;"
    context["body"] = (
        f'<p class="cnnlearn-edition" style="{style}">{link}</p>\n'
        + context.get("body", "")
    )
    alternate = f'<link rel="alternate" hreflang="{lang}" href="{href}" />'
    context["metatags"] = context.get("metatags", "") + "\n" + alternate


def setup(app) -> dict:
    app.add_config_value("cnnlearn_edition", {}, "html", types=[dict])
    app.connect("html-page-context", add_link)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
