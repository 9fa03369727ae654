"""The official `openai` npm package (tests/node, pinned in its package-lock.json) against the session server.

``npm ci`` runs once, when tests/node/node_modules lacks the pinned version (node_modules is git-ignored);
then ``node --test`` runs the Node tests with ASSISTD_BASE_URL pointing at the live server. Without node
or npm the test is skipped locally, and fails in CI (``CI=true``), where they are installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KEY_A

NODE_DIR = Path(__file__).resolve().parent / "node"


def _tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, npm
    missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing} not found on PATH, and CI must run the Node SDK tests")
    pytest.skip(f"{missing} not installed: the Node SDK tests need Node 20+ and npm")


def _installed(pinned: str) -> bool:
    manifest = NODE_DIR / "node_modules" / "openai" / "package.json"
    try:
        return json.loads(manifest.read_text())["version"] == pinned
    except (OSError, ValueError, KeyError):
        return False


def _run(args: list[str], *, timeout: float, env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(args, cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(args)} timed out after {timeout}s:\n{exc.stdout or ''}\n{exc.stderr or ''}")
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-8000:]}\n{done.stderr[-4000:]}")


def test_node_sdk_streams(base_url):
    node, npm = _tools()
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["openai"]
    if not _installed(pinned):
        _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], timeout=300)
    assert _installed(pinned), f"npm ci did not install openai@{pinned}"
    env = {**os.environ, "ASSISTD_BASE_URL": base_url, "ASSISTD_API_KEY": KEY_A}
    _run([node, "--test", "--test-reporter=spec"], timeout=120, env=env)
