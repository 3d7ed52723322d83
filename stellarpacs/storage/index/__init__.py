"""The SQLite index backend: one database file in WAL mode beside the stored files.

``schema`` (tables, migrations, the statements that add a row), ``threads``
(the writer thread and the pool of blocking readers), ``instances`` (the
instance index), ``catalog`` (C-FIND plans run on their own reader),
``nservices`` (storage commitment requests and MPPS instances in the same
file). The services reach it only through :mod:`stellarpacs.storage.api`.
"""
