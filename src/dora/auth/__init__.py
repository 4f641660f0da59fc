"""Authentication (signed, expiring, revocable tokens) and authorisation (RBAC), pure."""

from dora.auth.rbac import (
    ALL,
    Action,
    Decision,
    Grant,
    Permissions,
    decide,
    in_scopes,
    visible_scopes,
)
from dora.auth.tokens import (
    InvalidToken,
    TokenClaims,
    TokenVerifier,
    check_secret,
    fingerprint,
    issue_token,
    verify_token,
)

__all__ = [
    "ALL",
    "Action",
    "Decision",
    "Grant",
    "InvalidToken",
    "Permissions",
    "TokenClaims",
    "TokenVerifier",
    "check_secret",
    "decide",
    "fingerprint",
    "in_scopes",
    "issue_token",
    "verify_token",
    "visible_scopes",
]
