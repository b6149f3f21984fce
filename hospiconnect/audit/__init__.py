"""The audit journal: append-only, hash-chained events tagged ``source:subject:action``."""
