"""Run schemathesis (its CLI, as a user would) against a live server and read back per-operation results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conformance.document import conformance_document

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "negative_data_rejection")
PHASES = ("examples", "coverage", "fuzzing", "stateful")


@dataclass(frozen=True)
class Profile:
    """How hard schemathesis tries: ``short`` runs in ``make test``, ``long`` in ``make conformance``."""

    max_examples: int
    max_steps: int
    phases: tuple[str, ...] = PHASES
    seed: int | None = 1


PROFILES = {
    # The coverage phase alone sends ~4,000 requests: the long profile's.
    "short": Profile(max_examples=3, max_steps=5, phases=("examples", "fuzzing", "stateful")),
    "long": Profile(max_examples=25, max_steps=20, seed=None),
}


def _toml_value(value: Any) -> str:
    return json.dumps(value)  # ids and header values are plain strings: JSON's quoting is TOML's


# Body fields naming other objects draw from real ones (a random id is a 404, so nothing past the lookup would
# be tested); each binding maps a body path to the shared object whose id it takes.
BODY_BINDINGS = {
    "body.assistant_id": "assistant_id",
    "body.file_id": "file_id",
    "body.file_ids[*]": "file_id",
    "body.vector_store_ids[*]": "vector_store_id",
    "body.tool_resources.file_search.vector_store_ids[*]": "vector_store_id",
    "body.tool_resources.code_interpreter.file_ids[*]": "file_id",
}


def write_config(path: Path, objects: dict[str, Any], headers: dict[str, str], profile: Profile) -> None:
    """Every path parameter pinned to a real object; deleting operations to their own victims."""
    lines = ["[headers]"] + [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in headers.items()]
    lines += ["", "[phases.stateful]", f"max-steps = {profile.max_steps}"]
    for name, value in objects["shared"].items():
        lines += ["", f"[dictionaries.{name}]", f"values = [{_toml_value(value)}]"]
    lines += ["", "[parameters]"]
    lines += [f'"path.{name}" = {_toml_value(value)}' for name, value in objects["shared"].items()]
    lines += [f"{_toml_value(key)} = {{ dictionary = {_toml_value(name)} }}" for key, name in BODY_BINDINGS.items()]
    for operation_id, params in objects["per_operation"].items():
        lines += ["", "[[operations]]", f"include-operation-id = {_toml_value(operation_id)}",
                  "[operations.parameters]"]
        lines += [f'"path.{name}" = {_toml_value(value)}' for name, value in params.items()]
    path.write_text("\n".join(lines) + "\n")


def run_schemathesis(base_url: str, objects: dict[str, Any], headers: dict[str, str], work: Path,
                     profile: Profile) -> dict[str, Any]:
    """Run every phase in both modes with our five checks; return the JSON report (and the CLI's output)."""
    doc_path, config_path, report_path = work / "document.json", work / "schemathesis.toml", work / "report.json"
    doc_path.write_text(json.dumps(conformance_document()))
    write_config(config_path, objects, headers, profile)
    st = Path(sys.executable).with_name("st")
    args = [
        str(st), "--config-file", str(config_path), "run", str(doc_path), "--url", base_url,
        "--phases", ",".join(profile.phases), "--mode", "all", "--checks", ",".join(CHECKS),
        "--max-examples", str(profile.max_examples), "--workers", "1", "--continue-on-failure",
        "--request-timeout", "30", "--report", "json", "--report-json-path", str(report_path),
        "--suppress-health-check", "all", "--output-truncate", "false",
    ]
    if profile.seed is not None:
        args += ["--seed", str(profile.seed)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=work, timeout=3600)
    (work / "output.txt").write_text(done.stdout + done.stderr)
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {"returncode": done.returncode, "output": done.stdout + done.stderr, "report": report}
