"""The SQL runtime store: tables, connections, migrations.

``source -> reconcile -> store -> engine``: the reconciler writes the applied projection here, the
engine reads definitions and writes executions. Nothing above this package writes SQL DDL.
"""

from controller.store.db import Store, default_url, open_store

__all__ = ["Store", "default_url", "open_store"]
