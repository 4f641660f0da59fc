#!/usr/bin/env bash
# The whole test suite: install, lint, type-check, tests. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "== mypy"
.venv/bin/mypy
if [ "$#" -eq 0 ] && [ "${DORA_TEST_CASSANDRA:-1}" != 0 ]; then
    # The CQL store on a real three-node Apache Cassandra (jars from Maven Central,
    # cached): the conformance suite (zero skips) and the node-failure test. Run apart,
    # then the cluster is stopped, so its JVMs do not slow the rest of the suite.
    echo "== pytest: CQL store on a local three-node Cassandra"
    trap 'bash scripts/cassandra.sh stop' EXIT
    bash scripts/cassandra.sh start 3
    DORA_TEST_CONTACT_POINTS=127.0.0.1:9042 DORA_TEST_CASSANDRA_CLUSTER=1 \
        .venv/bin/pytest tests/conformance tests/integration/test_cql_cluster.py \
        -k "cql or cluster" -p no:cacheprovider
    bash scripts/cassandra.sh stop
    set -- --ignore=tests/integration/test_cql_cluster.py
fi
echo "== pytest"
set +e
.venv/bin/pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$rc"
