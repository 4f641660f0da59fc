"""The node agent (`dora server node`): runs assigned containers in Docker and reports.

Modules: `spec` (the assignment contract), `reconcile` (pure decisions and the state
machine), `docker` (the aiodocker driver), `probe`/`gpu` (inventory), `client` (the
API channel), `agent` (the loops), `settings` (environment).
"""
