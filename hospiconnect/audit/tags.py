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

# MIE layer. MIE lifecycle tags are "mie:<type>:<action>" with type password | totp | webauthn | cps | e_cps.
MIE_ACTIONS = ("created", "activated", "suspended", "reactivated", "revoked", "renamed")


def mie_tag(mie_type: str, action: str) -> str:
    """Return the tag of an MIE lifecycle event, e.g. ``mie:totp:activated``."""
    if action not in MIE_ACTIONS:
        raise ValueError(f"unknown MIE action {action!r}")
    # "e-cps" → "mie:e_cps:…": a tag's parts are [a-z0-9_].
    return f"mie:{mie_type.replace('-', '_')}:{action}"


MIE_PASSWORD_CHANGED = "mie:password:changed"
MIE_RECOVERY_CODES_GENERATED = "mie:recovery_codes:generated"
AUTHN_PASSWORD_SUCCESS = "authn:password:success"
AUTHN_PASSWORD_FAILURE = "authn:password:failure"
AUTHN_PASSWORD_REHASHED = "authn:password:rehashed"
AUTHN_TOTP_SUCCESS = "authn:totp:success"
AUTHN_TOTP_FAILURE = "authn:totp:failure"
AUTHN_RECOVERY_CODE_USED = "authn:recovery_code:used"
AUTHN_RECOVERY_CODE_FAILURE = "authn:recovery_code:failure"
AUTHN_ACCOUNT_LOCKED = "authn:account:locked"
SYSTEM_KEK_ROTATED = "system:kek:rotated"

# OpenID provider: SSO sessions, interactions and the protocol (hospiconnect.idp).
AUTHN_SESSION_OPENED = "authn:session:opened"
AUTHN_SESSION_RENEWED = "authn:session:renewed"
AUTHN_SESSION_RAISED = "authn:session:raised"
AUTHN_SESSION_ENDED = "authn:session:ended"
AUTHN_INTERACTION_STARTED = "authn:interaction:started"
AUTHN_INTERACTION_LOGIN = "authn:interaction:login"
AUTHN_INTERACTION_SECOND_FACTOR = "authn:interaction:second_factor"
AUTHN_INTERACTION_COMPLETED = "authn:interaction:completed"
AUTHN_INTERACTION_MFA_WAIVED = "authn:interaction:second_factor_waived"
AUTHN_INTERACTION_REPLAYED = "authn:interaction:replayed"
OIDC_AUTHORIZE_REFUSED = "oidc:authorize:refused"
OIDC_CODE_ISSUED = "oidc:code:issued"
OIDC_CODE_REUSED = "oidc:code:reused"
OIDC_TOKEN_ISSUED = "oidc:token:issued"
OIDC_TOKEN_REFUSED = "oidc:token:refused"
OIDC_TOKEN_REVOKED = "oidc:token:revoked"
OIDC_REFRESH_ROTATED = "oidc:refresh:rotated"
OIDC_REFRESH_REUSED = "oidc:refresh:reused"
OIDC_CLIENT_AUTH_FAILED = "oidc:client_auth:failed"
OIDC_USERINFO_REFUSED = "oidc:userinfo:refused"
OIDC_LOGOUT_COMPLETED = "oidc:logout:completed"
OIDC_LOGOUT_REFUSED = "oidc:logout:refused"
OIDC_BACKCHANNEL_DELIVERED = "oidc:backchannel:delivered"
OIDC_BACKCHANNEL_FAILED = "oidc:backchannel:failed"

# Access policy (hospiconnect.idp.policy_gate, hospiconnect.policies_runtime).
AUTHZ_POLICY_DECIDED = "authz:policy:decided"
ADMIN_POLICY_RELOADED = "admin:policy:reloaded"
ADMIN_POLICY_RELOAD_REFUSED = "admin:policy:reload_refused"

# Enrollment (hospiconnect.enrollment): cases, identity checks and activation codes.
ENROLLMENT_CASE_OPENED = "enrollment:case:opened"
ENROLLMENT_CASE_REFUSED = "enrollment:case:refused"
ENROLLMENT_CASE_REJECTED = "enrollment:case:rejected"
ENROLLMENT_CASE_CANCELLED = "enrollment:case:cancelled"
ENROLLMENT_CASE_EXPIRED = "enrollment:case:expired"
ENROLLMENT_CASE_ACTIVATED = "enrollment:case:activated"
ENROLLMENT_LOST_MIE_REVOKED = "enrollment:lost_mie:revoked"
ENROLLMENT_IDENTITY_VERIFIED = "enrollment:identity:verified"
ENROLLMENT_IDENTITY_REFUSED = "enrollment:identity:refused"
ENROLLMENT_IDENTITY_MISMATCH = "enrollment:identity:mismatch"
ENROLLMENT_MIE_ISSUED = "enrollment:mie:issued"
ENROLLMENT_ACTIVATION_CODE_ISSUED = "enrollment:activation_code:issued"
ENROLLMENT_ACTIVATION_CODE_REDEEMED = "enrollment:activation_code:redeemed"
ENROLLMENT_ACTIVATION_CODE_REFUSED = "enrollment:activation_code:refused"
ENROLLMENT_INVITATION_SENT = "enrollment:invitation:sent"
ENROLLMENT_INVITATION_REFUSED = "enrollment:invitation:refused"
ENROLLMENT_INVITATION_NOT_SENT = "enrollment:invitation:not_sent"
ENROLLMENT_INVITATION_OPENED = "enrollment:invitation:opened"
ENROLLMENT_FCPLUS_STARTED = "enrollment:fcplus:started"
ENROLLMENT_FCPLUS_FAILED = "enrollment:fcplus:failed"
ENROLLMENT_FCPLUS_COMPLETED = "enrollment:fcplus:completed"
UPSTREAM_KEY_CREATED = "admin:upstream_key:created"

# Exceptions (dérogations, hospiconnect.authorizations) and emergency access (bris de glace,
# hospiconnect.authenticators.emergency).
POLICY_EXCEPTION_GRANTED = "admin:policy_exception:granted"
POLICY_EXCEPTION_REVOKED = "admin:policy_exception:revoked"
POLICY_EXCEPTION_EXPIRED = "system:policy_exception:expired"
POLICY_EXCEPTION_USED = "authz:policy_exception:used"
EMERGENCY_ISSUED = "admin:emergency:issued"
EMERGENCY_REFUSED = "admin:emergency:refused"
EMERGENCY_REVOKED = "admin:emergency:revoked"
EMERGENCY_REVIEWED = "admin:emergency:reviewed"
AUTHN_EMERGENCY_USED = "authn:emergency:used"
AUTHN_EMERGENCY_REFUSED = "authn:emergency:refused"

# Trajectory (hospiconnect.trajectory): targets added or removed by the RSSI.
TRAJECTORY_TARGET_ADDED = "admin:trajectory_target:added"
TRAJECTORY_TARGET_REMOVED = "admin:trajectory_target:removed"

# Trajectory (hospiconnect.trajectory.snapshots): one event per day snapshot taken, one per backfill run.
TRAJECTORY_SNAPSHOT_TAKEN = "system:trajectory:snapshot"
TRAJECTORY_BACKFILLED = "system:trajectory:backfill"

# National identity (hospiconnect.enrollment.national): pairing with Pro Santé Connect and sign-in with CPS/e-CPS.
NATIONAL_LINK_STARTED = "national:link:started"
NATIONAL_LINK_CREATED = "national:link:created"
NATIONAL_LINK_REFUSED = "national:link:refused"
NATIONAL_LINK_REMOVED = "national:link:removed"
NATIONAL_RPPS_FILLED = "national:rpps:filled"
AUTHN_PSC_STARTED = "authn:psc:started"
AUTHN_PSC_SUCCESS = "authn:psc:success"
AUTHN_PSC_FAILURE = "authn:psc:failure"
AUTHN_PSC_UNLINKED = "authn:psc:unlinked"
