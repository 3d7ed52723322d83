"""SCU helpers built only on the association (:mod:`stellarpacs.aio.protocols`).

The client facade (:class:`~stellarpacs.aio.client.ClientAssociation`) calls
them; they never import it.  ``contexts`` proposes presentation contexts,
``store`` sends PS3.10 files, ``retrieve`` reads C-MOVE/C-GET responses and
receives C-GET sub-operations, ``nservices`` sends DIMSE-N requests and
listens for storage commitment reports.
"""
