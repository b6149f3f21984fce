"""Event tags, ``source:subject:action`` (as in the journals of well-kept account systems)."""

import re

TAG_RE = re.compile(r"^[a-z0-9_]+:[a-z0-9_]+:[a-z0-9_]+$")

DIRECTORY_IDENTITY_CREATED = "directory:identity:created"
DIRECTORY_IDENTITY_UPDATED = "directory:identity:updated"
DIRECTORY_IDENTITY_HOMONYM_CONFIRMED = "directory:identity:homonym_confirmed"
DIRECTORY_IDENTITY_DUPLICATE_REFUSED = "directory:identity:duplicate_refused"
DIRECTORY_IDENTITY_SUSPENDED = "directory:identity:suspended"
DIRECTORY_IDENTITY_REACTIVATED = "directory:identity:reactivated"
DIRECTORY_IDENTITY_ACTIVATED = "directory:identity:activated"
DIRECTORY_IDENTITY_ENDED = "directory:identity:ended"
DIRECTORY_IDENTITY_DEPARTED = "directory:identity:departed"
DIRECTORY_IMPORT_APPLIED = "directory:import:applied"
API_TOKEN_CREATED = "admin:api_token:created"
API_TOKEN_REVOKED = "admin:api_token:revoked"
API_TOKEN_REFUSED = "api:token:refused"
SYSTEM_DATABASE_INITIALISED = "system:database:initialised"
