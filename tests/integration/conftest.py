"""The three-node Cassandra test runs only beside the cluster `scripts/test.sh` starts
for it (DORA_TEST_CASSANDRA_CLUSTER=1, its first phase); elsewhere it is not collected,
rather than collected and skipped."""

from __future__ import annotations

import os

collect_ignore = (
    [] if os.environ.get("DORA_TEST_CASSANDRA_CLUSTER") == "1" else ["test_cql_cluster.py"]
)
