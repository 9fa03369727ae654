"""Decompression bombs and pathological documents uploaded to a vector store: each file ends ``failed`` with
``invalid_file``, the server's memory stays bounded, it keeps answering, and its log holds no traceback.

The bombs are built here without ever holding their decompressed size: a deflate block of 1 MiB of zeros,
ended by a full flush (which resets the compressor), is the same bytes every time, so N copies of it are a
valid stream of N MiB of zeros.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from assistd.retrieval import InvalidFile, parse
from assistd.retrieval.parse_limits import ParseLimits
from tests.servers import LiveProcess

MiB = 1024**2
RSS_GROWTH_LIMIT = 300 * MiB  # a 1 GiB bomb parsed in the server would take it far beyond this


def zeros_deflated(mib: int, *, zlib_wrapper: bool = False) -> tuple[bytes, int]:
    """(compressed stream of ``mib`` MiB of zeros, its CRC-32); raw deflate, or zlib-wrapped for PDF."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(MiB)) + comp.flush(zlib.Z_FULL_FLUSH)
    crc, adler = 0, 1
    for _ in range(mib):
        crc, adler = zlib.crc32(bytes(MiB), crc), zlib.adler32(bytes(MiB), adler)
    body = block * mib + comp.flush()
    if zlib_wrapper:
        return b"\x78\xda" + body + struct.pack(">I", adler), crc
    return body, crc


def raw_zip(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip from (name, compressed data, crc, uncompressed size, method) entries, written by hand so that
    an entry may be precompressed (and its declared size may be anything)."""
    out = io.BytesIO()
    central = []
    for name, data, crc, usize, method in entries:
        offset = out.tell()
        raw_name = name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), usize,
                              len(raw_name), 0) + raw_name + data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data),
                                   usize, len(raw_name), 0, 0, 0, 0, 0, offset) + raw_name)
    start = out.tell()
    cd = b"".join(central)
    out.write(cd)
    count = len(entries)
    if count > 0xFFFF:  # zip64 end records carry the count
        end64 = out.tell()
        out.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, len(cd), start))
        out.write(struct.pack("<IIQI", 0x07064B50, 0, end64, 1))
        count = 0xFFFF
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(cd), start, 0))
    return out.getvalue()


def docx_parts(text: str) -> dict[str, bytes]:
    from docx import Document

    buf = io.BytesIO()
    doc = Document()
    doc.add_paragraph(text)
    doc.save(buf)
    with zipfile.ZipFile(buf) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def docx_with(extra: list[tuple[str, bytes, int, int, int]], text: str = "a bomb in disguise") -> bytes:
    parts = docx_parts(text)
    # the huge part is an image of the document: python-docx loads every related part
    rels = parts["word/_rels/document.xml.rels"].replace(
        b"</Relationships>",
        b'<Relationship Id="rIdBomb" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        b'image" Target="media/image1.png"/></Relationships>')
    parts["word/_rels/document.xml.rels"] = rels
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(
        b"</Types>", b'<Default Extension="png" ContentType="image/png"/></Types>')
    plain = [(name, data, zlib.crc32(data), len(data), 0) for name, data in parts.items()]
    return raw_zip(plain + extra)


def flate_stream(data: bytes) -> bytes:
    return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"


def pdf_of(contents: bytes, streams: list[bytes]) -> bytes:
    """A one-page PDF whose /Contents is ``contents`` (objects from 4 on are ``streams``)."""
    bodies = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
              b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %s "
              b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (contents, 4 + len(streams))]
    bodies += [flate_stream(s) for s in streams]
    bodies.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(bodies, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % off for off in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(bodies) + 1, xref))
    return out.getvalue()


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def ingest_bomb(client, http, server: LiveProcess, name: str, data: bytes) -> dict:
    """Upload and attach ``data``; poll (each poll a GET that must answer) until it ends; return the file,
    having checked the server's memory and log."""
    assert server.proc is not None
    log_start = server.log_path.stat().st_size
    before = rss(server.proc.pid)
    store = client.vector_stores.create(name=f"bomb {name}")
    file_id = client.files.create(file=(name, data), purpose="assistants").id
    http.post(f"/vector_stores/{store.id}/files", json={"file_id": file_id}).raise_for_status()
    peak = before
    for _ in range(3000):
        r = http.get(f"/vector_stores/{store.id}/files/{file_id}")  # answers while the bomb is parsed
        assert r.status_code == 200, r.text
        peak = max(peak, rss(server.proc.pid))
        if r.json()["status"] != "in_progress":
            break
    obj = r.json()
    assert peak - before < RSS_GROWTH_LIMIT, f"server RSS grew by {(peak - before) // MiB} MiB"
    with open(server.log_path, "rb") as log:
        log.seek(log_start)
        new_log = log.read().decode(errors="replace")
    assert "Traceback" not in new_log, new_log[-3000:]
    return obj


def assert_invalid(obj: dict, *words: str) -> None:
    assert obj["status"] == "failed", obj
    assert obj["last_error"]["code"] == "invalid_file", obj
    message = obj["last_error"]["message"].lower()
    assert all(w in message for w in words), message


@pytest.fixture(scope="module")
def gib_of_zeros() -> tuple[bytes, int]:
    return zeros_deflated(1024)


def test_docx_with_a_gibibyte_part_fails_as_invalid(client, http, server, gib_of_zeros) -> None:
    body, crc = gib_of_zeros
    data = docx_with([("word/media/image1.png", body, crc, 1024 * MiB, 8)])
    assert len(data) < 2 * MiB
    assert_invalid(ingest_bomb(client, http, server, "bomb.docx", data), "decompress")


def test_docx_whose_declared_sizes_lie_fails_as_invalid(client, http, server, gib_of_zeros) -> None:
    body, crc = gib_of_zeros
    data = docx_with([("word/media/image1.png", body, crc, 1000, 8)])  # declares 1000 bytes
    assert_invalid(ingest_bomb(client, http, server, "liar.docx", data))


def test_docx_with_a_hundred_thousand_entries_fails_as_invalid(client, http, server) -> None:
    image = [("word/media/image1.png", b"png", zlib.crc32(b"png"), 3, 0)]
    data = docx_with(image + [(f"x/{i}", b"", 0, 0, 0) for i in range(100_000)])
    assert_invalid(ingest_bomb(client, http, server, "many.docx", data), "parts")


def test_pdf_with_a_flate_bomb_stream_fails_as_invalid(client, http, server) -> None:
    body, _ = zeros_deflated(1024, zlib_wrapper=True)
    assert_invalid(ingest_bomb(client, http, server, "bomb.pdf", pdf_of(b"4 0 R", [body])), "limit")


def test_pdf_streams_are_capped_in_total() -> None:
    """Several streams, each under pypdf's per-stream limit, over ours together (parsed in-process with a
    small limit: the budget is the same code in the worker)."""
    body, _ = zeros_deflated(3, zlib_wrapper=True)
    data = pdf_of(b"[4 0 R 5 0 R 6 0 R 7 0 R]", [body] * 4)
    with pytest.raises(InvalidFile, match="decompress"):
        parse(data, "many.pdf", None, ParseLimits(max_bytes=10 * MiB))


def test_text_formats_are_bounded() -> None:
    limits = ParseLimits(max_bytes=1000)
    with pytest.raises(InvalidFile, match="more than"):
        parse(b"word " * 1000, "big.txt", None, limits)
    with pytest.raises(InvalidFile, match="nested"):
        parse(b"[" * 100_000 + b"]" * 100_000, "deep.json", None)
    with pytest.raises(InvalidFile, match="CSV"):
        parse(b'a,"' + b"x" * 200_000 + b'"\n', "wide.csv", None)


def test_docx_with_an_xml_entity_bomb_fails_as_invalid() -> None:
    """A billion laughs in the document part: libxml2 refuses the amplification, python-docx resolves no
    entities; either way nothing expands (in-process: the worker only adds bounds)."""
    parts = docx_parts("x")
    entities = b'<!ENTITY a "aaaaaaaaaa">' + b"".join(
        b'<!ENTITY %s "%s">' % (chr(98 + i).encode(), b"&%s;" % chr(97 + i).encode() * 10) for i in range(9))
    doc = parts["word/document.xml"]
    body = doc[doc.index(b"<w:document"):].replace(b">x<", b">&j;<")
    parts["word/document.xml"] = b'<?xml version="1.0"?><!DOCTYPE w:document [' + entities + b"]>" + body
    data = raw_zip([(name, d, zlib.crc32(d), len(d), 0) for name, d in parts.items()])
    with pytest.raises(InvalidFile):
        parse(data, "laughs.docx", None)
