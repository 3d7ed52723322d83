"""StellarPACS: a DICOM server and protocol toolkit on asyncio."""
