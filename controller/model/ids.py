"""Row ids as users type them (CLI arguments, URL segments, API parameters): 1 to :data:`ID_MAX`.

Every id column of the store is a 32-bit INTEGER on PostgreSQL, so a larger number names no row:
callers answer "not found" (404, exit 2) for it instead of passing it to the database, which would
refuse it with an overflow error.
"""

from __future__ import annotations

ID_MAX = 2**31 - 1
