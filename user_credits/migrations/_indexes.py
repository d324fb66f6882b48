"""Indexes that migrations build in raw SQL on the ledger, whose table may hold millions of rows.

On PostgreSQL they are built and dropped ``CONCURRENTLY``, so that the ledger keeps taking
writes meanwhile; a migration using them is therefore not atomic (``CONCURRENTLY`` cannot run
in a transaction). The loader skips this module: its name starts with ``_``.
"""


def _concurrently(schema_editor) -> str:
    return "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""


def create_index(schema_editor, name: str, definition: str) -> None:
    """``CREATE INDEX name definition`` (``definition``: ``ON table (…) [WHERE …]``), unless
    an index of that name exists."""
    schema_editor.execute(
        f"CREATE INDEX {_concurrently(schema_editor)}IF NOT EXISTS {name} {definition}"
    )


def drop_index(schema_editor, name: str) -> None:
    schema_editor.execute(f"DROP INDEX {_concurrently(schema_editor)}IF EXISTS {name}")
