"""Pydantic models of request bodies, mirroring ``assistants-openapi.yaml`` (limits, enums, shapes)."""
