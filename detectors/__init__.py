"""Streaming detectors over columnar batches. Pure computation: no I/O library is imported here."""
