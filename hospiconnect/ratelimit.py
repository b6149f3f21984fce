"""Throttling and lockout shared by every process (database or Redis)."""
