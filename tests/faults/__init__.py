"""Fault tests: the provider with its PostgreSQL restarted under load, and with its Redis stopped."""
