"""HTTP layer: one router per resource. Parsing and responses only; logic lives in ``services``."""
