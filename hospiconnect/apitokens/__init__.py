"""Bearer tokens for the machine APIs (SCIM, JSON API): created by the CLI, stored as keyed hashes."""
