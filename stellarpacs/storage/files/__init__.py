"""The PS3.10 file store: where files go, how they become durable, how a header is read back.

``layout`` (the folders under a storage root and each instance's path, safe
whatever its UIDs), ``durable`` (spare files, directory fsyncs shared between
concurrent stores, the atomic install) and ``header`` (a stored header read
back with pydicom, and what the index keeps of it). Writing the header itself
is :mod:`stellarpacs.part10`; the temporary file is :mod:`stellarpacs.fileio`.
"""
