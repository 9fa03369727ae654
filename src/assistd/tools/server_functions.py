"""What the server-side tools (file_search, code_interpreter) share: the chat function the model is
offered for them, under a name that can't collide with the run's own function tools."""

from __future__ import annotations

from typing import Any


def free_name(run: dict[str, Any], preferred: str, fallback: str) -> str:
    """``preferred``, unless one of the run's client functions already uses it."""
    taken = {t["function"]["name"] for t in run.get("tools") or [] if t.get("type") == "function"}
    return fallback if preferred in taken else preferred


def one_string_function(name: str, description: str, param: str, param_description: str) -> dict[str, Any]:
    """A chat-completions function taking one required string parameter."""
    return {"type": "function", "function": {
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {param: {"type": "string", "description": param_description}},
            "required": [param],
        },
    }}
