"""Submit a task with the Python SDK, follow its progress, and save its results.

    export GENGATE_API_KEY=...                       # a key: gengate keys create --name me
    export GENGATE_BASE_URL=http://127.0.0.1:8000    # where the gateway listens (this is the default)
    python examples/submit_and_wait.py --prompt "A lighthouse at dusk" --param seed=7

Results go to ./out/<task id>/ (`--out` to change). Needs only the SDK: `pip install ./clients/python`
installs it without the server.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gengate import APIError, Client, TaskStatus, TaskTimeoutError


def parse_param(raw: str) -> tuple[str, Any]:
    """`key=value`, the value read as JSON when it is JSON (`7`, `true`), else kept as a string."""
    key, _, value = raw.partition("=")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def show(status: TaskStatus) -> None:
    """Called after every poll: one line per reading."""
    progress = f" {status.progress}%" if status.progress is not None else ""
    print(f"  {status.state}{progress}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-image", help="model id (default: demo-image)")
    parser.add_argument("--mode", default=None, help="e.g. text-to-image; needed when the model has several")
    parser.add_argument("--prompt", default="A beautiful sunset over mountains")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="more input")
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder for the results")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the task")
    args = parser.parse_args(argv)

    task_input: dict[str, Any] = {"prompt": args.prompt, **dict(map(parse_param, args.param))}
    if args.mode:
        task_input["mode"] = args.mode
    try:
        client = Client()  # GENGATE_BASE_URL and GENGATE_API_KEY
    except ValueError as exc:  # no key given
        print(exc, file=sys.stderr)
        return 2
    try:
        with client:
            task_id = client.submit(args.model, task_input)
            print(f"submitted {task_id}", flush=True)
            status = client.wait(args.model, task_id, timeout=args.timeout, on_update=show)
            if not status.succeeded:
                print(f"failed: {status.fail_code}: {status.fail_msg}", file=sys.stderr)
                return 1
            folder = args.out / task_id
            folder.mkdir(parents=True, exist_ok=True)
            for url in status.result_urls:
                print(f"saved {client.download(url, folder)}", flush=True)
    except APIError as exc:  # the gateway said no: bad key, bad input, out of credits, ...
        print(f"refused: {exc}", file=sys.stderr)  # names the error code and the trace id
        return 2
    except TaskTimeoutError as exc:  # the task goes on; poll it later with client.status()
        print(str(exc), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
