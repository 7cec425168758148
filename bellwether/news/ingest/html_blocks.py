"""Turn an HTML fragment into body blocks: headings, paragraphs, quotes."""

from __future__ import annotations

import lxml.html

from .types import Block

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


def html_to_blocks(fragment: str) -> list[Block]:
    """Return the blocks of ``fragment``; inline markup in paragraphs is kept as HTML.

    >>> [b.kind for b in html_to_blocks("<h2>Why</h2><p>Because <b>yes</b>.</p>")]
    ['heading', 'paragraph']
    """
    if not fragment.strip():
        return []
    root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    blocks: list[Block] = []
    loose: list[str] = []

    def flush_loose() -> None:
        text = " ".join("".join(loose).split())
        if text:
            blocks.append(Block(kind="paragraph", text=text))
        loose.clear()

    if root.text and root.text.strip():
        loose.append(root.text)
    for el in root:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in _HEADINGS:
            flush_loose()
            text = " ".join(el.text_content().split())
            if text:
                blocks.append(Block(kind="heading", text=text))
        elif tag == "blockquote":
            flush_loose()
            text = " ".join(el.text_content().split())
            if text:
                blocks.append(Block(kind="quote", text=text))
        elif tag in ("p", "ul", "ol"):
            flush_loose()
            inner = _inner_html(el) if tag == "p" else lxml.html.tostring(el, encoding="unicode")
            if " ".join(el.text_content().split()):
                blocks.append(Block(kind="paragraph", html=inner))
        elif tag in ("div", "section", "article", "figure"):
            flush_loose()
            blocks.extend(html_to_blocks(lxml.html.tostring(el, encoding="unicode", with_tail=False)))
        elif tag:
            # Stray inline markup outside a paragraph keeps only its text.
            loose.append(el.text_content())
        if el.tail and el.tail.strip():
            loose.append(el.tail)
    flush_loose()
    return blocks


def _inner_html(el) -> str:
    parts = [el.text or ""]
    parts += [lxml.html.tostring(child, encoding="unicode") for child in el]
    return "".join(parts).strip()
