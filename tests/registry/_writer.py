"""A registry writer run as a child process by the concurrency and crash tests (not a test module).

python _writer.py loop  URL ARTIFACTS NAME BASE            register BASE, BASE+1, ... until killed
python _writer.py burst URL ARTIFACTS NAME BASE COUNT GO    wait for GO, open, register COUNT models, print versions
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

from honed.registry import open_registry
from tests.registry.conftest import write_model


def main(argv: list[str]) -> None:
    mode, url, artifacts, name, base = argv[:5]
    work = Path(tempfile.mkdtemp(prefix="honed-writer-"))
    if mode == "loop":
        reg = open_registry(url, artifacts=artifacts)
        print("ready", flush=True)
        for i in itertools.count():
            model = write_model(work / f"{i}.onnx", float(base) + i)
            print(f"begin {i}", flush=True)
            version = reg.register(model, name, actor=f"writer-{base}", tags=[f"t{i}"], residency=["AE"])
            print(f"done {i} {version.version}", flush=True)
    elif mode == "burst":
        count, go = int(argv[5]), Path(argv[6])
        models = [write_model(work / f"{i}.onnx", float(base) + i) for i in range(count)]
        print("ready", flush=True)
        while not go.exists():
            time.sleep(0.005)
        reg = open_registry(url, artifacts=artifacts)  # opened at the same moment: races the schema creation too
        versions = [reg.register(m, name, actor=f"writer-{base}").version for m in models]
        print(json.dumps(versions), flush=True)
    reg.close()


if __name__ == "__main__":
    main(sys.argv[1:])
