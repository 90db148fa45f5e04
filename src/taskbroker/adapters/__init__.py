"""Adapters: the ports of :mod:`taskbroker.core.ports` over real and in-memory backends.

* :mod:`.sql`: the ledger in SQLite or PostgreSQL (SQLAlchemy 2).
* :mod:`.celery`: the broker over Celery (Redis or the filesystem transport), and the
  Celery tasks that run the runtime.
* :mod:`.memory`: a ledger and a stub broker in process, for fast tests and plugin authors.
"""
