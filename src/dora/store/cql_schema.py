"""CQL schema of `dora.store.cql`: one keyspace per Dora (``DB_NAME``), tables by access path.

Partition sizes are bounded by design (issue 3):

=================  =======================================  ===============================
table              partition                                bounded by
=================  =======================================  ===============================
records            (kind, zone, workspace)                  resources of one workspace
scopes             (kind)                                   zones x workspaces of a kind
by_node            (kind, zone, node)                       containers on one node
by_parent          (kind, zone, workspace, parent)          replicas of one workload
pending            (zone)                                   unplaced containers of a zone
spec_versions      (uid)                                    `HISTORY_LIMIT` (trimmed)
events             (uid)                                    `EVENT_LIMIT` (trimmed) + TTL
zone_events        (zone, day bucket)                       one day of a zone's events, TTL
feed               (zone, time bucket)                      one bucket of a zone's changes, TTL
feed_ends          (zone)                                   one row
leases             (name)                                   one row (lightweight transactions)
=================  =======================================  ===============================

No secondary indexes: ``by_node``, ``by_parent``, ``pending`` and ``scopes`` are lookup
tables the store maintains itself (entries added before a record write, removed after
it; readers re-check every entry against the record, so a stale entry is harmless).
"""

from __future__ import annotations

SCHEMA_VERSION = 1

TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS {ks}.records (
        kind text, zone text, workspace text, name text,
        uid text, version bigint, spec text, meta text, desired text,
        computed text, observed text, spec_hash text, spec_number bigint,
        owner text, node text, parent text, created_at double, updated_at double,
        PRIMARY KEY ((kind, zone, workspace), name))""",
    """CREATE TABLE IF NOT EXISTS {ks}.scopes (
        kind text, zone text, workspace text,
        PRIMARY KEY ((kind), zone, workspace))""",
    """CREATE TABLE IF NOT EXISTS {ks}.by_node (
        kind text, zone text, node text, workspace text, name text,
        PRIMARY KEY ((kind, zone, node), workspace, name))""",
    """CREATE TABLE IF NOT EXISTS {ks}.by_parent (
        kind text, zone text, workspace text, parent text, name text,
        PRIMARY KEY ((kind, zone, workspace, parent), name))""",
    """CREATE TABLE IF NOT EXISTS {ks}.pending (
        zone text, created_at double, workspace text, name text,
        PRIMARY KEY ((zone), created_at, workspace, name))""",
    """CREATE TABLE IF NOT EXISTS {ks}.spec_versions (
        uid text, number bigint, spec text, spec_hash text, actor text, at double,
        PRIMARY KEY ((uid), number))""",
    """CREATE TABLE IF NOT EXISTS {ks}.events (
        uid text, at double, id timeuuid, kind text, zone text, workspace text, name text,
        reason text, message text, actor text, zbucket bigint,
        PRIMARY KEY ((uid), at, id)) WITH CLUSTERING ORDER BY (at DESC, id DESC)""",
    """CREATE TABLE IF NOT EXISTS {ks}.zone_events (
        zone text, bucket bigint, at double, id timeuuid, kind text, workspace text,
        name text, reason text, message text, actor text,
        PRIMARY KEY ((zone, bucket), at, id)) WITH CLUSTERING ORDER BY (at DESC, id DESC)""",
    """CREATE TABLE IF NOT EXISTS {ks}.feed (
        zone text, bucket bigint, id timeuuid, op text, kind text, workspace text,
        name text, version bigint, parts text, at double,
        PRIMARY KEY ((zone, bucket), id))""",
    """CREATE TABLE IF NOT EXISTS {ks}.feed_ends (
        zone text PRIMARY KEY, first_id timeuuid, last_id timeuuid)""",
    """CREATE TABLE IF NOT EXISTS {ks}.leases (
        name text PRIMARY KEY, holder text, fencing_token bigint, expires_at double)""",
    """CREATE TABLE IF NOT EXISTS {ks}.dora_schema (
        name text PRIMARY KEY, version int)""",
)

TABLE_NAMES: tuple[str, ...] = (
    "records",
    "scopes",
    "by_node",
    "by_parent",
    "pending",
    "spec_versions",
    "events",
    "zone_events",
    "feed",
    "feed_ends",
    "leases",
    "dora_schema",
)
