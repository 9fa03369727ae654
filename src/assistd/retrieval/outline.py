"""A document's outline (its title and headings) and the context it gives each part of a chunk.

A chunk's words rarely say what they are about: "use a default of None and create the list inside the
function" answers a question about default argument values, which only the section's heading says. So
every model window of a chunk is embedded after the path of headings in effect where the window starts
(the document's title, then each heading above it: "4. More Control Flow Tools > 4.8.1. Default Argument
Values"), not only the window that happens to hold the heading. Only what is *embedded* changes: the chunk's
stored and returned text stays the document's own, and the keyword index sees that text alone.

Headings come from the parser (``parsing.parse_document``): HTML ``<title>`` and ``<h1>``–``<h6>``, DOCX
Title / Heading N paragraphs, Markdown ``#`` headings and underlined (setext) ones. A document without any
is given its file name as its title.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

MAX_CONTEXT_CHARS = 300  # the heading path is cut from its start (the title first) beyond this
SEPARATOR = " > "


@dataclass(frozen=True, slots=True)
class Heading:
    offset: int  # character offset of the heading's text in the parsed document
    level: int  # 0 = the document's title, 1–6 = h1–h6
    text: str


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def markdown_headings(text: str) -> list[Heading]:
    """ATX (``## Title``) and setext (a line underlined by ``===`` or ``---``) headings, outside fenced code."""
    found: list[Heading] = []
    fence: str | None = None
    offset = 0
    previous: tuple[int, str] | None = None  # the last line, if it could be a setext heading's text
    for line in text.split("\n"):
        start, offset = offset, offset + len(line) + 1
        m = _FENCE.match(line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
            previous = None
            continue
        if fence is not None:
            continue
        if (m := _ATX.match(line)) is not None:
            found.append(Heading(start, len(m.group(1)), m.group(2).strip()))  # its section starts at the "#"
            previous = None
        elif (m := _SETEXT.match(line)) is not None and previous is not None:
            found.append(Heading(previous[0], 1 if m.group(1)[0] == "=" else 2, previous[1]))
            previous = None
        else:
            stripped = line.strip()
            previous = (start + len(line) - len(line.lstrip()), stripped) if stripped else None
    return found


def clean(text: str) -> str:
    """A heading's text for context: one line, without Sphinx's permalink sign."""
    return " ".join(text.replace("¶", " ").split())


class Outline:
    """The heading path in effect at any offset of one document."""

    def __init__(self, headings: list[Heading], title: str | None = None) -> None:
        ordered = sorted((h for h in headings if clean(h.text)), key=lambda h: h.offset)
        self._offsets = [h.offset for h in ordered]
        self._paths: list[tuple[str, ...]] = []
        stack: list[tuple[int, str]] = [(0, clean(title))] if title and clean(title) else []
        for h in ordered:
            text = clean(h.text)
            if h.level == 0:  # a title found in the document (HTML <title>, a DOCX Title) replaces the name
                stack = [(0, text)] + [s for s in stack if s[0] > 0]
            else:
                stack = [s for s in stack if s[0] < h.level] + [(h.level, text)]
            self._paths.append(tuple(_dedupe(t for _, t in stack)))
        self._before = tuple(_dedupe(t for _, t in ([(0, clean(title))] if title and clean(title) else [])))

    def path_at(self, offset: int) -> tuple[str, ...]:
        """The title and headings of the section holding ``offset`` (a heading starting there included)."""
        i = bisect_right(self._offsets, offset)
        return self._paths[i - 1] if i else self._before

    def context_at(self, offset: int) -> str:
        return join(self.path_at(offset))

    def chunk_contexts(self, start: int, end: int) -> list[tuple[int, str]]:
        """For the chunk ``[start, end)`` of the document: (offset in the chunk, context) where the context
        changes — at 0, then at each heading inside the chunk."""
        marks = [(0, self.context_at(start))]
        i = bisect_right(self._offsets, start)
        while i < len(self._offsets) and self._offsets[i] < end:
            context = join(self._paths[i])
            if context != marks[-1][1]:
                marks.append((self._offsets[i] - start, context))
            i += 1
        return marks


def join(path: tuple[str, ...]) -> str:
    text = SEPARATOR.join(path)
    while len(text) > MAX_CONTEXT_CHARS and len(path) > 1:
        path = path[1:]
        text = SEPARATOR.join(path)
    return text[-MAX_CONTEXT_CHARS:]


def _dedupe(texts: Iterable[str]) -> list[str]:
    """One entry for a heading that repeats the one before it. An HTML page's <h1> ("4. Control Flow") is
    often the start of its <title> ("4. Control Flow — Python 3.11 documentation"): the <h1> is kept, the
    site's name, the same on every page, says nothing about a passage."""
    out: list[str] = []
    for t in texts:
        if out and (out[-1].lower() == t.lower() or out[-1].lower().startswith(t.lower() + " ")):
            out[-1] = t
        else:
            out.append(t)
    return out
