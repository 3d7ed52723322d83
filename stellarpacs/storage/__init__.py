"""Storage: the PS3.10 files, their index, Q/R planning; the services see it through ``api``.

``api`` (the Protocols the services use, and what they take from storage),
``errors`` and ``records`` (storage's exceptions and values, every backend's),
``archive`` (files plus the SQLite index: the default implementation),
``tools`` (stats, list, verify, reindex, delete), and the subpackages
``query`` (no I/O), ``files`` (the file store) and ``index`` (the SQLite
backend). Nothing here imports the network, DIMSE statuses or the services.
"""
