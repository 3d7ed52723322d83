"""Query/Retrieve without I/O: the information models, matching, identifiers and query plans.

``qrmodel`` (PS3.4 C.6: levels, keys and the index columns that hold them),
``matching`` (PS3.4 C.2.2.2: a key's value as a condition, in SQL or in
Python), ``identifier`` (a C-FIND identifier as a checked :class:`Query`),
``retrieval`` (a C-MOVE / C-GET identifier as its unique keys), ``findplan``
(a query as one SELECT and the way to answer each row) and ``matches`` (the
response identifier of one match). An index backend runs the plans; the
services parse and answer through :mod:`stellarpacs.storage.api`.
"""
