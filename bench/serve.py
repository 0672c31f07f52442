"""Serve our app (or a minimal Flask route) on loopback for the bench; prints the port, stops on stdin EOF."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hikaze_manager.server import return_large_buffers_to_os, start_server  # noqa: E402


def minimal_app(body_file: str):
    """One route returning the same JSON as ``body_file`` through ``jsonify`` (the baseline)."""
    from flask import Flask, jsonify

    payload = json.loads(Path(body_file).read_bytes())
    app = Flask("minimal")
    app.json.sort_keys = False
    app.json.ensure_ascii = False

    @app.get("/<path:anything>")
    def answer(anything):
        return jsonify(payload)

    return app


def main() -> None:
    return_large_buffers_to_os()  # as python -m hikaze_manager does
    data_dir = sys.argv[1]
    if len(sys.argv) > 3 and sys.argv[2] == "--minimal":
        app = minimal_app(sys.argv[3])
    else:
        from hikaze_manager import create_app

        types = ("checkpoints", "loras", "vae", "embeddings", "controlnet")
        config = {"DATA_DIR": data_dir,
                  "MODEL_TYPES": {t: {"roots": [str(Path(data_dir) / t)]} for t in types}}
        if len(sys.argv) > 3 and sys.argv[2] == "--database-url":
            config.update(DATABASE_URL=sys.argv[3], MACHINE_NAME="bench")
        app = create_app(config)
    handle = start_server(app, "127.0.0.1", 0)
    print(handle.port, flush=True)
    sys.stdin.read()
    handle.stop()


if __name__ == "__main__":
    main()
