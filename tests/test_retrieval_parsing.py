"""Parsing files to text and chunking text by tokens (no database, no model)."""

from __future__ import annotations

import io
import json

import pytest

from assistd.retrieval import ChunkingError, InvalidFile, UnsupportedFile, chunk, count_tokens, parse, strategy_params
from assistd.retrieval.tokens import encode


def minimal_pdf(lines: list[str]) -> bytes:
    """A one-page PDF written by hand (Helvetica text), with a correct xref table."""
    stream = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({t}) '" for t in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n{body}\nendobj\n".encode())
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def test_plain_text_markdown_and_code() -> None:
    assert parse(b"hello\r\nworld\n", "a.txt", "text/plain") == "hello\nworld"
    assert parse("# Title\n\nCaf\u00e9 *bold*".encode(), "README.md", None) == "# Title\n\nCaf\u00e9 *bold*"
    for name in ("x.py", "x.js", "x.ts", "x.java", "x.c", "x.cpp", "x.go", "x.rs", "x.rb", "x.php", "x.sh",
                 "x.css", "x.cs", "x.tex"):
        assert parse(b"def f():\n    return 1\n", name) == "def f():\n    return 1"
    assert parse(b"all: build\n", "Makefile", None) == "all: build"  # no extension, looks like text
    assert parse("\ufeffBOM".encode(), "b.txt") == "BOM"
    assert parse("utf sixteen".encode("utf-16"), "u.txt") == "utf sixteen"


def test_html_keeps_text_and_drops_scripts() -> None:
    html = (b"<html><head><title>Doc</title><style>p{color:red}</style><script>alert('x')</script></head>"
            b"<body><h1>Heading</h1><p>First &amp; <b>bold</b> para.</p><ul><li>one</li><li>two</li></ul>"
            b"<table><tr><td>a</td><td>b</td></tr></table></body></html>")
    text = parse(html, "page.html", "text/html")
    assert "alert" not in text and "color" not in text
    assert "Doc" in text and "Heading" in text and "First & bold para." in text
    assert "one\ntwo" in text and "a b" in text


def test_json_and_csv_become_readable_text() -> None:
    text = parse(json.dumps({"name": "Ada", "tags": ["math", "engines"]}).encode(), "d.json")
    assert '"name": "Ada"' in text and "engines" in text
    assert parse(b"name,age\nAda,36\nAlan,41\n", "people.csv") == "name, age\nAda, 36\nAlan, 41"
    with pytest.raises(InvalidFile, match="invalid JSON"):
        parse(b"{not json", "d.json")


def test_pdf_and_docx() -> None:
    assert parse(minimal_pdf(["Hello PDF world", "Second line"]), "doc.pdf") == "Hello PDF world\nSecond line"
    from docx import Document

    doc = Document()
    doc.add_paragraph("First paragraph of the docx.")
    doc.add_paragraph("Second one.")
    table = doc.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "cell A", "cell B"
    buf = io.BytesIO()
    doc.save(buf)
    text = parse(buf.getvalue(), "doc.docx", None)
    assert text == "First paragraph of the docx.\n\nSecond one.\n\ncell A | cell B"


@pytest.mark.parametrize("data,name,ctype,error", [
    (b"\x89PNG\r\n\x1a\n\x00\x00", "image.png", "image/png", UnsupportedFile),
    (b"PK\x03\x04zip", "archive.zip", None, UnsupportedFile),
    (b"MZ\x00\x00binary", "tool.exe", "application/octet-stream", UnsupportedFile),
    (b"slides", "deck.pptx", None, UnsupportedFile),
    (b"", "empty.txt", None, InvalidFile),
    (b"   \n\t ", "blank.md", None, InvalidFile),
    (b"caf\xe9 latin-1", "latin1.txt", None, InvalidFile),
    (b"text\x00with nul", "nul.txt", None, InvalidFile),
    (b"%PDF-1.4 garbage", "broken.pdf", None, InvalidFile),
    (b"not a zip", "broken.docx", None, InvalidFile),
    (b"<script>only()</script>", "s.html", None, InvalidFile),
])
def test_unsupported_and_invalid_files(data: bytes, name: str, ctype: str | None, error: type) -> None:
    with pytest.raises(error) as info:
        parse(data, name, ctype)
    assert info.value.code == ("unsupported_file" if error is UnsupportedFile else "invalid_file")
    assert info.value.message


def test_pdf_without_text_is_invalid() -> None:
    with pytest.raises(InvalidFile, match="no extractable text"):
        parse(minimal_pdf([]), "scan.pdf")


def test_tokens_are_openai_cl100k() -> None:
    assert encode("hello world") == [15339, 1917]  # cl100k_base ids, as tiktoken gives them
    assert count_tokens("<|endoftext|>") > 1  # special-token text in a document is plain text


def _document(paragraphs: int = 60) -> str:
    sentences = ["The harbour opened at dawn.", "Fishermen sorted the catch by size and colour.",
                 "A storm warning was issued for the evening.", "Prices at the market rose slightly."]
    return "\n\n".join(" ".join(sentences[(p + i) % 4] for i in range(3 + p % 5)) for p in range(paragraphs))


def test_chunks_respect_budget_overlap_and_boundaries() -> None:
    text = _document()
    for max_tokens, overlap in ((100, 50), (200, 0), (800, 400), (150, 20)):
        chunks = chunk(text, max_tokens, overlap)
        assert len(chunks) > 1
        for c in chunks:
            assert c.tokens == count_tokens(c.text) <= max_tokens  # exact budget, counted after cutting
            assert text[c.start:c.end] == c.text and c.text == c.text.strip()
        # Every character is covered; consecutive chunks overlap when asked (and never go backwards).
        assert chunks[0].start == 0 and chunks[-1].end == len(text)
        for a, b in zip(chunks, chunks[1:], strict=False):
            assert a.start < b.start and b.start <= a.end + 2
            if overlap:
                assert b.start < a.end
        # Cuts fall on sentence (or paragraph) ends, never mid-word, in this regular text.
        assert all(c.text.endswith(".") for c in chunks)
        assert all(c.text[0].isupper() for c in chunks)  # and start at sentence starts


def test_overlap_is_about_the_requested_tokens() -> None:
    text = " ".join(f"word{i}" for i in range(3000))  # no sentence breaks: cuts at spaces
    chunks = chunk(text, 100, 50)
    for a, b in zip(chunks, chunks[1:], strict=False):
        shared = count_tokens(text[b.start:a.end])
        assert 37 <= shared <= 63  # the start may move by a quarter of the overlap to a break


def test_paragraph_breaks_are_preferred() -> None:
    para = "Alpha beta gamma delta. " * 30  # ~180 tokens
    text = (para.strip() + "\n\n") * 6
    for c in chunk(text, 400, 100):
        assert c.text.endswith("delta.")
        assert c.end == len(text.rstrip()) or text[c.end:c.end + 2] == "\n\n"


def test_a_single_huge_word_is_still_cut_within_budget() -> None:
    chunks = chunk("x" * 20000, 100, 0)
    assert all(c.tokens <= 100 for c in chunks) and "".join(c.text for c in chunks) == "x" * 20000
    assert chunk("", 100, 0) == [] and chunk("   ", 100, 0) == []


def test_strategy_validation() -> None:
    assert strategy_params(None) == (800, 400) and strategy_params({"type": "auto"}) == (800, 400)
    assert strategy_params({"type": "static", "static": {"max_chunk_size_tokens": 100,
                                                         "chunk_overlap_tokens": 50}}) == (100, 50)
    for size, overlap in ((99, 0), (4097, 0), (100, 51), (1000, -1), ("800", 400), (800, True)):
        with pytest.raises(ChunkingError):
            strategy_params({"type": "static", "static": {"max_chunk_size_tokens": size,
                                                          "chunk_overlap_tokens": overlap}})
    with pytest.raises(ChunkingError):
        strategy_params({"type": "other"})
    with pytest.raises(ChunkingError):
        chunk("text", 50, 0)


def small_docx(text: str) -> bytes:
    from docx import Document

    doc = Document()
    doc.add_paragraph(text)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def test_docx_packages_are_held_to_the_limits() -> None:
    from assistd.retrieval.parse_limits import ParseLimits

    data = small_docx("inside the limits")
    assert parse(data, "ok.docx", None, ParseLimits()) == "inside the limits"
    with pytest.raises(InvalidFile, match="parts"):
        parse(data, "few.docx", None, ParseLimits(max_entries=3))
    with pytest.raises(InvalidFile, match="decompress"):
        parse(data, "small.docx", None, ParseLimits(max_bytes=2000))


def test_the_parse_worker_answers_and_fails_files_not_the_server() -> None:
    import asyncio

    from assistd.retrieval.parse_limits import ParseLimits
    from assistd.retrieval.parse_worker import parse_isolated

    async def attempt(data: bytes, name: str, limits: ParseLimits) -> str | Exception:
        try:
            return await parse_isolated(data, name, None, limits)
        except Exception as exc:
            return exc

    async def main() -> list[str | Exception]:
        return await asyncio.gather(
            attempt(small_docx("from the worker \u00e9"), "w.docx", ParseLimits()),
            attempt(b"\x89PNG\r\n\x1a\n", "i.png", ParseLimits()),
            attempt(b"hi", "slow.txt", ParseLimits(timeout_seconds=0.001)),  # killed before it starts
            attempt(b"[" + b"[]," * 3_000_000 + b"[]]", "big.json",  # 9 MB, ~200 MB of lists
                    ParseLimits(memory_bytes=120 * 1024**2)))

    text, image, slow, big = asyncio.run(main())
    assert text == "from the worker \u00e9"
    assert isinstance(image, UnsupportedFile)
    assert isinstance(slow, InvalidFile) and "within 0.001 s" in slow.message
    assert isinstance(big, InvalidFile) and "memory" in big.message


def test_headings_are_found_where_they_start_and_the_text_is_unchanged() -> None:
    from docx import Document

    from assistd.retrieval.parsing import parse_document

    html = ("<html><head><title>Guide &amp; notes</title></head><body><nav><h3>Contents</h3></nav>"
            "<h1>Guide</h1><p>Intro \ue000text.</p><h2>Install<a href='#i'>\u00b6</a></h2><p>Run it.</p>"
            "<svg><title>not a heading</title></svg><h3>On <code>Linux</code></h3><p>apt.</p></body></html>").encode()
    doc = parse_document(html, "g.html")
    assert doc.text == parse(html, "g.html") and "\ue000" not in doc.text
    assert [(h.level, h.text) for h in doc.headings] == [
        (0, "Guide & notes"), (3, "Contents"), (1, "Guide"), (2, "Install\u00b6"), (3, "On Linux")]
    assert all(doc.text[h.offset:].startswith(h.text) for h in doc.headings)

    md = "Setup\n=====\n\nSome text.\n\n## Linux ##\n\n```\n# not a heading\n```\n\nPorts\n---\n\nmore"
    doc = parse_document(md.encode(), "notes.md")
    assert doc.text == md and [(h.level, h.text) for h in doc.headings] == [(1, "Setup"), (2, "Linux"), (2, "Ports")]
    assert [md[h.offset:h.offset + 8] for h in doc.headings] == ["Setup\n==", "## Linux", "Ports\n--"]
    assert parse_document(b"# a comment\nx = 1\n", "code.py").headings == []  # only Markdown has # headings

    d = Document()
    d.add_heading("Handbook", 0)
    d.add_heading("Leave", 1)
    d.add_paragraph("Ask your manager.")
    buf = io.BytesIO()
    d.save(buf)
    doc = parse_document(buf.getvalue(), "h.docx")
    assert doc.text == "Handbook\n\nLeave\n\nAsk your manager."
    assert [(h.offset, h.level, h.text) for h in doc.headings] == [(0, 0, "Handbook"), (10, 1, "Leave")]
    assert parse_document("no headings \ue000 here".encode(), "t.txt").text == "no headings \ue000 here"


def test_every_part_of_a_chunk_gets_the_heading_path_it_is_in() -> None:
    from assistd.retrieval.outline import Heading, Outline
    from assistd.retrieval.parsing import parse_document
    from assistd.retrieval.pipeline import split

    outline = Outline([Heading(0, 0, "Python Tutorial \u2014 docs"), Heading(10, 1, "Python Tutorial"),
                       Heading(50, 2, "Functions\u00b6"), Heading(90, 3, "Defaults"), Heading(200, 2, "Classes")],
                      title="tutorial.html")
    assert outline.path_at(5) == ("Python Tutorial \u2014 docs",)  # the <title> replaces the file name
    assert outline.context_at(120) == "Python Tutorial > Functions > Defaults"  # the h1, without the site's name
    assert outline.context_at(250) == "Python Tutorial > Classes"
    assert outline.chunk_contexts(60, 210) == [(0, "Python Tutorial > Functions"),
                                               (30, "Python Tutorial > Functions > Defaults"),
                                               (140, "Python Tutorial > Classes")]
    assert Outline([], title="report.pdf").chunk_contexts(0, 100) == [(0, "report.pdf")]

    md = "# Setup\n\n" + "Install the package and configure it. " * 150 + "\n\n## Ports\n\n" + "Open port 80. " * 150
    pieces = split(parse_document(md.encode(), "setup.md"), "setup.md", max_tokens=200, overlap=50)
    assert len(pieces) > 4 and all(p.contexts[0][1].startswith("setup.md > Setup") for p in pieces)
    assert pieces[-1].contexts[0] == (0, "setup.md > Setup > Ports") and "# " not in pieces[-1].text
