"""Moving data between assistd instances: archives (archive.py), ``assistd export`` (export.py),
``assistd import`` (verify.py then import_.py), objects from other Assistants-API servers (openai_shape.py).
The format is docs/archive-format.md."""
