"""Alembic's environment: run the migrations on the connection ``selector_service.store.migrate`` passes.

No ``alembic.ini`` is needed: the service builds the configuration in code and hands over a connection of
its ``Database`` (inside the transaction that holds the start-up lock). For the ``alembic`` command line
(writing a new revision), set ``sqlalchemy.url`` with ``-x url=...``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from selector_service.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(context.get_x_argument(as_dictionary=True)["url"])
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
