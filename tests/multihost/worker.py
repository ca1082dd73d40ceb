"""One process of a multi-process job started by tests.multihost.harness: join the job, run the function, write its
result (pickle) where the harness reads it."""

import argparse
import importlib
import json
import pickle
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("--process-id", type=int, required=True)
    p.add_argument("--num-processes", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--heartbeat-timeout", type=int, required=True)
    p.add_argument("--args", default="{}")
    a = p.parse_args()

    import jax
    from common.distributed import initialize
    initialize(f"localhost:{a.port}", a.num_processes, a.process_id, heartbeat_timeout_seconds=a.heartbeat_timeout)

    module, name = a.target.split(":")
    value = getattr(importlib.import_module(module), name)(**json.loads(a.args))
    tmp = Path(a.out) / f"result-{a.process_id}.pkl.tmp"
    tmp.write_bytes(pickle.dumps(value))
    tmp.rename(Path(a.out) / f"result-{a.process_id}.pkl")
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
