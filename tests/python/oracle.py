"""The oracle for the differential tests: Python's own logging handlers.

usage: python3 oracle.py SPEC.json OUTDIR [STDOUT]

SPEC holds a dictConfig ("config", or "yaml": its text, read with
yaml.safe_load), the records to log ("records", LogRecord
attributes), files to create first with a pinned mtime ("mtimes"), with some
text ("existing") or as symlinks ("symlinks"), and actions
to run between records ("actions": rename/delete before record N). Python's
clock, as the handlers see it, is each record's `created`, which is what the
hub's TimedRotatingFileHandler uses too. The files appear in OUTDIR, which
the test compares byte for byte with what the hub wrote from the same spec;
what handlers write to sys.stdout goes to the file STDOUT.

A QueueHandler with "handlers" (Python 3.12's dictConfig form, which this
3.11 does not know) is built as 3.12 builds it: a QueueHandler on a queue,
and a QueueListener(queue, *handlers, respect_handler_level=...) that is
drained after each record, so that the order is deterministic.
"""

import datetime
import json
import logging
import logging.config
import logging.handlers
import os
import queue
import sys
import time

from record_clock import Clock


def main():
    spec = json.load(open(sys.argv[1]))
    os.chdir(sys.argv[2])
    clock = Clock()
    clock.now = spec.get("start", time.time())
    logging.handlers.time = clock
    for name, mtime in spec.get("mtimes", {}).items():
        open(name, "a").close()
        os.utime(name, (mtime, mtime))
    for name, target in spec.get("symlinks", {}).items():
        os.symlink(target, name)
    for name, text in spec.get("existing", {}).items():
        with open(name, "w") as f:
            f.write(text)
    if len(sys.argv) > 3:
        # ext://sys.stdout is resolved when dictConfig runs: before it.
        sys.stdout = open(sys.argv[3], "w")
    if "yaml" in spec:
        import yaml

        config = yaml.safe_load(spec["yaml"])
    else:
        config = json.loads(json.dumps(spec["config"]))
    listeners = []
    queues = config.setdefault("_oracle_queues", {})
    for name, h in config.get("handlers", {}).items():
        if h.get("class", "").endswith("QueueHandler") and "handlers" in h:
            queues[name] = queue.Queue()
            listeners.append((name, queues[name], h.pop("handlers"), h.pop("respect_handler_level", False)))
            h.pop("listener", None)
            h["queue"] = "cfg://_oracle_queues." + name
    for h in config.get("handlers", {}).values():
        # logfunnel's own keys (Python would pass them to the constructor).
        h.pop("escape_control_chars", None)
        # JSON has no time of day; logfunnel takes "HH:MM[:SS]".
        for key in ("atTime", "at_time"):
            if isinstance(h.get(key), str):
                h["atTime"] = datetime.time.fromisoformat(h.pop(key))
    logging.config.dictConfig(config)
    listeners = [
        logging.handlers.QueueListener(q, *[logging._handlers[n] for n in names], respect_handler_level=rhl)
        for _, q, names, rhl in listeners
    ]
    actions = {a["before"]: a for a in spec.get("actions", [])}
    for i, r in enumerate(spec["records"]):
        if i in actions:
            act = actions[i]
            if "rename" in act:
                os.rename(*act["rename"])
            if "delete" in act:
                os.remove(act["delete"])
        d = dict(r)
        # As the hub (and Python 3.13's time_ns()/1e9) computes it.
        created = d["created"] = d.pop("created_ns") / 1e9
        d["msecs"] = int((created - int(created)) * 1000) + 0.0  # 3.11
        d["msg"] = d.pop("message")
        d["args"] = None
        d["levelname"] = logging.getLevelName(d["levelno"])
        d["filename"] = os.path.basename(d["pathname"])
        d["module"] = os.path.splitext(d["filename"])[0]
        d.update(d.pop("extra", {}))
        record = logging.makeLogRecord(d)
        clock.now = created
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
        for listener in listeners:
            while True:
                try:
                    listener.handle(listener.queue.get_nowait())
                except queue.Empty:
                    break
    logging.shutdown()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
