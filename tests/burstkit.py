"""One engine process bursting triggers into a shared store (tests/test_safeguards.py runs two at once).

    python tests/burstkit.py STORE_URL CONFIG DATA_DIR ACCOUNT/NAME N

Prints {"started": n, "dropped": n} as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from controller.config import load_config
from controller.engine.runtime import Engine
from controller.errors import RateLimited
from controller.store import open_store


def main(url: str, config: str, data_dir: str, key: str, n: int) -> None:
    store = open_store(url)
    engine = Engine(store, data_dir=Path(data_dir), config=load_config(Path(config)))
    started = dropped = 0
    for _ in range(n):
        try:
            engine.start(key, {"type": "manual"})
            started += 1
        except RateLimited:
            dropped += 1
    store.close()
    print(json.dumps({"started": started, "dropped": dropped}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
