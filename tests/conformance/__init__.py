"""Schemathesis over OpenAI's document against the live server (tests/test_conformance.py, make conformance)."""

PROFILE_ENV = "ASSISTD_CONFORMANCE_PROFILE"
OUT_ENV = "ASSISTD_CONFORMANCE_OUT"
