"""Per-operation results: which checks failed where, read from schemathesis's report and its failure listing."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.conformance.document import Document, operations_by_label

_SECTION = re.compile(r"^_{3,} (GET|POST|DELETE|PUT|PATCH) (\S+) _{3,}$")
_FAILURE = re.compile(r"^- (ST\d+ [^(\n]+?)(?: \(\d+ violations?\))?$")


@dataclass
class Row:
    operation_id: str
    label: str  # "POST /threads/{thread_id}/runs"
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def clean(self) -> bool:
        return not self.failures


def failures_by_operation(output: str) -> dict[str, Counter[str]]:
    """``{"POST /x": Counter({"ST101 Server error": 2})}`` from the CLI's failure listing."""
    found: dict[str, Counter[str]] = {}
    current: Counter[str] | None = None
    for line in output.splitlines():
        if section := _SECTION.match(line.strip()):
            current = found.setdefault(f"{section[1]} {section[2]}", Counter())
        elif current is not None and (failure := _FAILURE.match(line.strip())):
            current[failure[1].strip()] += 1
    return found


def per_operation(report: dict[str, Any], output: str, doc: Document) -> list[Row]:
    listed = failures_by_operation(output)
    reported = {op for failure in report.get("failures", []) for op in failure.get("operations", [])}
    rows = []
    for label, operation_id in operations_by_label(doc).items():
        failures = listed.get(label, Counter())
        if label in reported and not failures:
            failures["see the schemathesis output"] += 1
        rows.append(Row(operation_id, label, failures))
    return rows


def render_table(rows: list[Row]) -> str:
    clean = sum(row.clean for row in rows)
    lines = [f"{clean}/{len(rows)} operations clean.", "",
             "| operation | operationId | result |", "|---|---|---|"]
    for row in rows:
        result = "clean" if row.clean else "; ".join(f"{name} ×{n}" for name, n in sorted(row.failures.items()))
        lines.append(f"| `{row.label}` | {row.operation_id} | {result} |")
    return "\n".join(lines) + "\n"
