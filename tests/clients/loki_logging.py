"""Logs through python-logging-loki's handler to a Loki push endpoint (JSON bodies).

usage: loki_logging.py URL VERSION
VERSION 1 sends the current JSON form (streams/values), 0 the older one (labels/entries).
The handler swallows errors, so the caller checks what was stored.
"""
import logging
import sys

import logging_loki


def main():
    url, version = sys.argv[1], sys.argv[2]
    handler = logging_loki.LokiHandler(url=url, tags={"application": "billing"}, version=version)
    logger = logging.getLogger("billing.worker")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.info("invoice 1001 sent")
    logger.error("invoice 1002 failed: card expired", extra={"tags": {"customer": "acme"}})
    handler.close()


if __name__ == "__main__":
    main()
