"""Alembic's entry point for the results store: runs the revisions on the connection `upgrade()` passes in."""
from alembic import context

from benchmarks.migrations import VERSION_TABLE

context.configure(connection=context.config.attributes["connection"], version_table=VERSION_TABLE,
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
