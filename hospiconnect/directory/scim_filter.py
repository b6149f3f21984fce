"""SCIM filter expressions (RFC 7644 §3.4.2.2): parser to an AST (pure)."""
