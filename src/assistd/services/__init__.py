"""Business logic, free of web imports: each function takes a connection and the caller's project."""
