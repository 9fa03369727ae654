"""What the store's fast paths raise when the caller should take the ordinary one."""


class FastReadUnavailable(Exception):
    """``Database.fetch_row()`` could not answer (database busy, connection lost): use ``read()`` instead."""
