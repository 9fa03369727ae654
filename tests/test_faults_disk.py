"""The data directory full (a 4 MiB tmpfs, holding the SQLite database too, as in the default deployment) during
an upload and during ingestion. Uploads that cannot be stored are refused without a 500 and leave nothing
behind; files acknowledged before stay whole; ingestion ends each file in a terminal, truthful state; once space
is freed the server works again. Needs root (mount); skipped otherwise."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.faults import Watcher
from tests.run_helpers import sdk, serve, server_env, wait_until

TEXT = " ".join(f"otter{i} holds hands while sleeping." for i in range(400)).encode()


@pytest.fixture
def small_disk():
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="assistd-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def _fill(mount: Path) -> Path:
    """Take every free byte, as another tenant's data would."""
    filler = mount / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_full_data_directory_during_upload_and_ingestion(small_disk, upstream, is_postgres):
    if is_postgres:
        pytest.skip("the data directory holds the database in the SQLite deployment")
    env = server_env(f"sqlite:///{small_disk / 'assistd.db'}", upstream, small_disk,
                     ASSISTD_EMBEDDINGS="upstream:text-embedding-3-small")
    with serve(env) as proc:
        client = sdk(proc)
        kept = client.files.create(file=("kept.txt", TEXT), purpose="assistants")
        store = client.vector_stores.create(name="full")
        filler = _fill(small_disk)

        with Watcher([f"{proc.url}/healthz", f"{proc.url}/v1/files"]) as watcher:
            refused = httpx.post(f"{proc.url}/v1/files", files={"file": ("big.txt", TEXT * 8)},
                                 data={"purpose": "assistants"}, timeout=30)
            assert refused.status_code not in (200, 500), refused.text
            assert refused.json()["error"]["message"], refused.text
            # Attaching writes to the full database: refused (503, nothing acknowledged) or, if it got in,
            # ingested to a terminal state.
            attached = httpx.post(f"{proc.url}/v1/vector_stores/{store.id}/files", json={"file_id": kept.id},
                                  headers={"OpenAI-Beta": "assistants=v2"}, timeout=30)
            assert attached.status_code in (200, 503), attached.text
            if attached.status_code == 200:
                ended = wait_until(lambda: (f := client.vector_stores.files.retrieve(
                    kept.id, vector_store_id=store.id)).status != "in_progress" and f, timeout=60,
                    what="ingestion ends")
                assert ended.status == "completed" or ended.last_error.message, ended
            else:
                assert client.vector_stores.files.list(store.id).data == []
        assert watcher.codes[500] == 0 and watcher.codes[0] == 0, (watcher.codes, watcher.bodies)

        names = [f.filename for f in client.files.list()]
        assert names == ["kept.txt"], names  # the refused upload left nothing behind
        assert client.files.retrieve(kept.id).bytes == len(TEXT)  # its content is checked by ingesting it below

        filler.unlink()
        again = client.files.create(file=("after.txt", b"space again"), purpose="assistants")
        assert client.files.retrieve(again.id).bytes == len(b"space again")
        if attached.status_code == 200:  # re-attaching once there is room ingests it
            client.vector_stores.files.delete(kept.id, vector_store_id=store.id)
        done = client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=kept.id,
                                                          poll_interval_ms=50)
        assert done.status == "completed", done
