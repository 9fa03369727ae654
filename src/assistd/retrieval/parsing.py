"""File bytes → plain text for chunking: text and source code, Markdown, HTML, JSON, CSV, PDF, DOCX.

Errors carry a human message and map to a vector store file's ``last_error.code``:
``UnsupportedFile`` → ``unsupported_file`` (a type we cannot read: images, archives, binaries…),
``InvalidFile`` → ``invalid_file`` (a supported type that is corrupt, has no text, or is not UTF-8/UTF-16 —
the API accepts only those encodings for text files, or is over a ``ParseLimits`` bound: a decompression bomb).

The type is taken from the file name's extension, then from ``content_type``; a name without an extension
(``Makefile``, ``README``) is read as text if it looks like text.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePosixPath

from assistd.retrieval.outline import Heading, markdown_headings
from assistd.retrieval.parse_limits import LimitExceeded, ParseLimits, check_zip, pdf_budget, size


class ParseError(Exception):
    code = "invalid_file"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedFile(ParseError):
    code = "unsupported_file"


class InvalidFile(ParseError):
    code = "invalid_file"


_CODE = {"py", "pyi", "js", "mjs", "cjs", "jsx", "ts", "tsx", "java", "kt", "kts", "scala", "c", "h", "cc", "cpp",
         "cxx", "hpp", "hh", "cs", "go", "rs", "rb", "php", "sh", "bash", "zsh", "ps1", "css", "scss", "less",
         "sql", "swift", "m", "r", "lua", "pl", "pm", "dart", "ex", "exs", "erl", "hs", "clj", "vue", "svelte",
         "tex", "yaml", "yml", "toml", "ini", "cfg", "conf", "xml", "proto", "graphql", "gradle", "bat"}
_TEXT = {"txt", "text", "log", "rst", "adoc", "org", "md", "markdown", "mdx"} | _CODE
_KINDS = {**{e: "text" for e in _TEXT}, "html": "html", "htm": "html", "xhtml": "html", "json": "json",
          "jsonl": "text", "csv": "csv", "tsv": "csv", "pdf": "pdf", "docx": "docx"}
_MIME = {"text/html": "html", "application/xhtml+xml": "html", "application/json": "json", "text/csv": "csv",
         "application/pdf": "pdf", "text/markdown": "text", "text/x-markdown": "text",
         "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
         "application/x-sh": "text", "application/javascript": "text", "application/typescript": "text",
         "application/x-python": "text", "application/xml": "text", "application/x-tex": "text"}
_NAMED = {"doc": "legacy .doc", "ppt": "legacy .ppt", "pptx": ".pptx", "xls": "spreadsheet", "xlsx": "spreadsheet"}


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    text: str
    headings: list[Heading]
    """The title and headings the format marks (HTML, DOCX, Markdown), by offset in ``text``; see outline.py."""


def parse(data: bytes, filename: str, content_type: str | None = None, limits: ParseLimits | None = None) -> str:
    """The file's text, stripped; raises ``UnsupportedFile`` or ``InvalidFile``. Bounds decompression and
    the text's size; time and memory only in a worker (``parse_worker.parse_isolated``)."""
    return parse_document(data, filename, content_type, limits).text


def parse_document(data: bytes, filename: str, content_type: str | None = None,
                   limits: ParseLimits | None = None) -> ParsedDocument:
    """``parse`` with the document's headings."""
    limits = limits or ParseLimits()
    kind = _kind(data, filename, content_type)
    if not data:
        raise InvalidFile(f"{filename} is empty")
    marked: list[tuple[int, str]] = []  # (offset, heading) found by the parsers that know headings
    try:
        if kind == "html":
            text = _html(data, limits, marked)
        elif kind == "docx":
            text = _docx(data, limits, marked)
        else:
            text = {"text": _text, "json": _json, "csv": _csv, "pdf": _pdf}[kind](data, limits)
    except LimitExceeded as exc:
        raise InvalidFile(f"{filename}: {exc}") from None
    except RecursionError:  # JSON nested thousands deep, and the like
        raise InvalidFile(f"{filename} is nested too deeply to parse") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text, headings = _take_marks(text, marked) if marked else (text.strip(), [])
    if not text:
        raise InvalidFile(f"{filename} contains no text to index")
    if len(text) > limits.max_bytes:
        raise InvalidFile(f"{filename} yields more than {size(limits.max_bytes)} of text")
    _check_tokens(text, limits.max_tokens, filename)
    if kind == "text" and _is_markdown(filename, content_type):
        headings = markdown_headings(text)
    return ParsedDocument(text, headings)


# Where a parser saw a heading start: removed from the text by ``_take_marks``, and from the document's own
# text before parsing (a private-use character: no real text is lost).
_MARK = "\ue000"


def _take_marks(text: str, marked: list[tuple[int, str]]) -> tuple[str, list[Heading]]:
    """The text without marks, stripped, and a heading per mark (``marked``: (level, text), in order)."""
    pieces = text.split(_MARK)
    offsets, position = [], len(pieces[0])
    for piece in pieces[1:]:
        offsets.append(position)
        position += len(piece)
    joined = "".join(pieces)
    lead = len(joined) - len(joined.lstrip())
    text = joined.strip()
    return text, [Heading(min(max(o - lead, 0), len(text)), level, title)
                  for o, (level, title) in zip(offsets, marked, strict=False)]


def _is_markdown(filename: str, content_type: str | None) -> bool:
    ext = PurePosixPath(filename.replace("\\", "/")).suffix.lower().lstrip(".")
    return ext in ("md", "markdown", "mdx") or (content_type or "").split(";")[0].strip().lower() in (
        "text/markdown", "text/x-markdown")


_TOKEN_SLICE = 1_000_000  # characters tokenized at a time: the ids of one slice are all that is held


def _check_tokens(text: str, max_tokens: int, filename: str) -> None:
    """``InvalidFile`` once the text is over ``max_tokens`` (counted slice by slice, stopping early)."""
    if len(text) * 4 <= max_tokens:  # a token is at least one UTF-8 byte, a character at most four
        return
    from assistd.retrieval import tokens

    enc = tokens.encoding()
    count = 0
    for start in range(0, len(text), _TOKEN_SLICE):
        count += len(enc.encode_ordinary(text[start:start + _TOKEN_SLICE]))
        if count > max_tokens:
            raise InvalidFile(f"{filename} yields more than {max_tokens:,} tokens of text (the limit per file)")


def _kind(data: bytes, filename: str, content_type: str | None) -> str:
    ext = PurePosixPath(filename.replace("\\", "/")).suffix.lower().lstrip(".")
    if ext in _KINDS:
        return _KINDS[ext]
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime in _MIME:
        return _MIME[mime]
    if ext in _NAMED:
        raise UnsupportedFile(f"{_NAMED[ext]} files are not supported; convert {filename} to PDF, DOCX or text")
    if mime.startswith("text/") or (not ext and _looks_textual(data)):
        return "text"
    what = f"extension .{ext}" if ext else f"type {mime or 'unknown'}"
    raise UnsupportedFile(f"{filename}: files with {what} are not supported for file search")


def _looks_textual(data: bytes) -> bool:
    head = data[:8192]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    return b"\x00" not in head


def _decode(data: bytes) -> str:
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        if b"\x00" in data[:8192]:
            raise InvalidFile("the file looks binary (NUL bytes), not text")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidFile(f"text files must be UTF-8, UTF-16 or ASCII (bad byte at offset {exc.start})") from None


def _text(data: bytes, limits: ParseLimits) -> str:
    return _decode(data)


class _HtmlText(HTMLParser):
    _SKIP = {"script", "style", "noscript", "template", "svg", "iframe", "object"}
    _BLOCK = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer",
              "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "title", "dt", "dd", "hr", "main", "nav"}

    _HEADINGS = {"title": 0, "h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

    def __init__(self, marked: list[tuple[int, str]]) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.marked = marked  # (level, text) of each heading, in order; a _MARK in the text where each starts
        self.heading: tuple[int, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in self._BLOCK and self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        if tag in self._HEADINGS and not self.skipping and self.heading is None:
            self.parts.append(_MARK)
            self.heading = (self._HEADINGS[tag], [])

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n\n" if tag in ("p", "title") or tag.startswith("h") else "\n")
        if self.heading is not None and self._HEADINGS.get(tag) == self.heading[0]:
            self.marked.append((self.heading[0], "".join(self.heading[1])))
            self.heading = None

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            data = data.replace(_MARK, "")
            self.parts.append(data)
            if self.heading is not None:
                self.heading[1].append(data)


def _html(data: bytes, limits: ParseLimits, marked: list[tuple[int, str]]) -> str:
    """The text, a ``_MARK`` where each heading starts (its level and text appended to ``marked``)."""
    parser = _HtmlText(marked)
    parser.feed(_decode(data))
    parser.close()
    if parser.heading is not None:  # a heading never closed: it still starts where its mark is
        marked.append((parser.heading[0], "".join(parser.heading[1])))
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


def _json(data: bytes, limits: ParseLimits) -> str:
    try:
        value = json.loads(_decode(data))
    except json.JSONDecodeError as exc:
        raise InvalidFile(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    # Indented JSON keeps keys next to their values, which is what a reader (and a retriever) needs.
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def _csv(data: bytes, limits: ParseLimits) -> str:
    text = _decode(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise InvalidFile(f"invalid CSV: {exc}") from None
    return "\n".join(", ".join(cell.strip() for cell in row) for row in rows if any(c.strip() for c in row))


def _pdf(data: bytes, limits: ParseLimits) -> str:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        with pdf_budget(limits) as check:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise InvalidFile("the PDF is encrypted")
            pages = []
            for page in reader.pages:
                pages.append(page.extract_text() or "")
                check()
    except (ParseError, LimitExceeded):
        raise
    except LimitReachedError as exc:
        raise LimitExceeded(f"the PDF is over a decompression limit ({exc}): a decompression bomb?") from None
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError, IndexError, AssertionError,
            ZeroDivisionError) as exc:  # pypdf lets malformed objects surface as these
        raise InvalidFile(f"unreadable PDF: {exc}") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise InvalidFile("the PDF has no extractable text (a scan without OCR?)")
    return text


def _docx(data: bytes, limits: ParseLimits, marked: list[tuple[int, str]]) -> str:
    import zipfile

    from docx import Document

    try:
        check_zip(data, limits, "DOCX")
        doc = Document(io.BytesIO(data))
    except LimitExceeded:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InvalidFile(f"unreadable DOCX: {exc}") from None
    except Exception as exc:  # python-docx raises its own and lxml's errors on malformed parts
        raise InvalidFile(f"unreadable DOCX: {exc}") from None
    parts = []
    for p in doc.paragraphs:
        text = p.text.replace(_MARK, "")
        level = _docx_heading_level(p) if text.strip() else None
        if level is not None:
            marked.append((level, text))
            text = _MARK + text
        parts.append(text)
    for table in doc.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.replace(_MARK, "").strip() for cell in row.cells))
    return "\n\n".join(p for p in parts if p.strip())


def _docx_heading_level(paragraph: object) -> int | None:
    """0 for a Title paragraph, N for "Heading N", else None (styles are the document's: read defensively)."""
    try:
        name = str(paragraph.style.name or "")  # type: ignore[attr-defined]
    except Exception:  # a style part python-docx cannot resolve
        return None
    if name == "Title":
        return 0
    if name.startswith("Heading ") and name[8:].isdigit():
        return min(max(int(name[8:]), 1), 6)
    return None
