"""A fresh process standing in for a Lambda execution environment: ``python -m`` this module
with ``http`` or ``sqs``; it reads a JSON list of events on stdin, invokes the handler with each
in turn (the first invocation is the cold start) and prints the JSON list of the answers."""

from __future__ import annotations

import json
import sys


def main(kind: str) -> None:
    if kind == "http":
        from shipyard.serverless.http import handler
    else:
        from shipyard.serverless.sqs import handler
    events = json.load(sys.stdin)
    answers = [handler(event, None) for event in events]
    print(json.dumps(answers), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
