#!/usr/bin/env bash
# Start `honed serve` with MODEL served as `mlp` version 1 on 127.0.0.1:PORT (V2 REST), in the foreground, for the
# peers harness:  ADD_PEER="honed=$PWD/benchmarks/serve/honed_peer.sh {MODEL} {PORT}" bash ../shared/peers/compare.sh ...
# Extra `honed serve` flags come from HONED_SERVE_FLAGS (e.g. "--no-batching"). Stops on SIGTERM (exec).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
MODEL="$(readlink -f "${1:?usage: honed_peer.sh MODEL PORT}")"; PORT="${2:?usage: honed_peer.sh MODEL PORT}"
REPO="$(mktemp -d /tmp/honed-peer-XXXXXX)"
mkdir -p "$REPO/mlp/1" && ln -s "$MODEL" "$REPO/mlp/1/model.onnx"
PY="${HONED_PYTHON:-/work/venv/bin/python}"
# shellcheck disable=SC2086
PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m honed serve --repository "$REPO" \
  --http "127.0.0.1:$PORT" --grpc off ${HONED_SERVE_FLAGS:-}
