"""Uploaded bytes are private on disk, never served as a page of this origin, and only given back for the
purposes the hosted API gave back; a hostile multipart head is a 400."""

from __future__ import annotations

import stat

import httpx
import pytest

from tests.test_auth import error_of
from tests.test_files import blob_files


def test_blobs_are_private(client, data_dir):
    made = client.files.create(file=("secret.txt", b"only mine"), purpose="user_data")
    [blob] = [p for p in blob_files(data_dir) if p.name == made.id]
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600
    directory = blob.parent
    while directory != data_dir:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        directory = directory.parent


def test_assistants_files_are_not_downloadable(client, http):
    made = client.files.create(file=("kb.txt", b"knowledge"), purpose="assistants")
    error = error_of(http.get(f"/files/{made.id}/content"), 400)
    assert error["message"] == "Not allowed to download files of purpose: assistants."
    assert error["type"] == "invalid_request_error"
    assert client.files.retrieve(made.id).purpose == "assistants"  # the metadata stays readable


@pytest.mark.parametrize("name", ["page.html", "image.svg", "script.js", "plain.txt", "data.json"])
def test_downloads_are_attachments_never_sniffed(client, http, name):
    body = b"<html><script>alert(document.cookie)</script></html>"
    made = client.files.create(file=(name, body), purpose="user_data")
    r = http.get(f"/files/{made.id}/content")
    assert r.status_code == 200 and r.content == body
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].startswith(f'attachment; filename="{name}"')


@pytest.mark.parametrize("length", [257, 1000, 70_000])
def test_a_long_multipart_boundary_is_400(base_url, length):
    from tests.conftest import KEY_A

    boundary = "b" * length
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n"
            f"--{boundary}--\r\n").encode()
    r = httpx.post(f"{base_url}/files", content=body, headers={
        "Authorization": f"Bearer {KEY_A}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
    error = error_of(r, 400)
    assert "boundary" in error["message"]
