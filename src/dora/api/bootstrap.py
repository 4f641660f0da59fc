"""First start of a cluster: schema, the admin workspace/role/user, the zone, and one
admin token printed exactly once.

Several replicas may start with ``INIT_DB=true`` at the same moment: the admin token
record and a bootstrap marker are written in one atomic batch that fails with
`AlreadyExists` for every replica but one, so exactly one prints a token.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from dora.api.identity import GLOBAL, TOKEN_KIND, token_key
from dora.api.settings import ApiSettings, SettingsError
from dora.auth import ALL, fingerprint, issue_token
from dora.model.specs.access import VERBS
from dora.store import AlreadyExists, Key, NewRecord, Store, Write

log = logging.getLogger("dora.api.bootstrap")

ADMIN = "admin"
BOOTSTRAP_KEY = Key("System", GLOBAL, GLOBAL, "bootstrap")


def admin_documents(zone: str) -> list[tuple[Key, dict[str, Any]]]:
    """The records a new cluster starts with."""
    return [
        (Key("Workspace", GLOBAL, GLOBAL, ADMIN), {}),
        (Key("Role", GLOBAL, GLOBAL, ADMIN), {"permission": {ALL: list(VERBS)}}),
        (
            Key("User", GLOBAL, GLOBAL, ADMIN),
            {
                "default": {"workspace": ADMIN, "zone": zone},
                "resources": [{"kind": ALL, "zone": ALL, "workspace": ALL, "role": ADMIN}],
            },
        ),
        (Key("Zone", GLOBAL, GLOBAL, zone), {}),
    ]


def token_record(
    *,
    jti: str,
    user: str,
    workspace: str,
    token_id: str,
    created_by: str,
    expires_at: float | None,
) -> NewRecord:
    return NewRecord(
        key=token_key(jti),
        spec={
            "user": user,
            "workspace": workspace,
            "id": token_id,
            "expires_at": expires_at,
            "created_by": created_by,
        },
        owner=created_by,
        parent=user,
    )


async def bootstrap(
    store: Store, settings: ApiSettings, *, now: float, announce: Callable[[str], None]
) -> bool:
    """Prepare the database; True when this call created the cluster (and announced
    the admin token through `announce`)."""
    if settings.init_db:
        await store.init()
    elif not await store.is_initialized():
        raise SettingsError(
            "the database is not initialized yet: start the first API replica with "
            "INIT_DB=true (it creates the schema and prints the admin token once)"
        )
    if not settings.init_db:
        return False
    for key, spec in admin_documents(settings.zone):
        with contextlib.suppress(AlreadyExists):
            await store.create(NewRecord(key=key, spec=spec, owner=ADMIN), actor="api")
    token, claims = issue_token(settings.secret, user=ADMIN, workspace=ADMIN, token_id="1", now=now)
    writes = [
        Write(key=BOOTSTRAP_KEY, new=NewRecord(key=BOOTSTRAP_KEY, spec={"at": now}, owner="api")),
        Write(
            key=token_key(claims.jti),
            new=token_record(
                jti=claims.jti,
                user=ADMIN,
                workspace=ADMIN,
                token_id="1",
                created_by="api",
                expires_at=None,
            ),
        ),
    ]
    try:
        await store.batch(writes, actor="api", fence=None)
    except AlreadyExists:
        log.info("event=bootstrap_skipped reason=already_initialized")
        return False
    log.info("event=bootstrap_done zone=%s token_fingerprint=%s", settings.zone, fingerprint(token))
    announce(f"Dora admin token (printed once, at the first database init; keep it safe): {token}")
    return True


__all__ = ["ADMIN", "TOKEN_KIND", "admin_documents", "bootstrap", "token_record"]
