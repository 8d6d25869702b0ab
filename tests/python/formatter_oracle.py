"""The oracle of the formatter's differential tests: CPython's own
logging.Formatter (and python-json-logger's JsonFormatter) on records built
by CPython's own LogRecord constructor.

usage: python3 formatter_oracle.py < CASES.json

CASES holds "utc" (format times with time.gmtime), "records" and
"formatters". Each record is built by logging.LogRecord() itself, with
time.time() returning its created_ns / 1e9 and logging._startTime set to
start_ns / 1e9, so that created, msecs and relativeCreated are computed by
this Python's code; the other attributes are then set as the hub's record
has them. A formatter is {"json": false, "fmt", "datefmt", "style"} for
logging.Formatter, or {"json": true, "class": DOTTED, "kwargs": {...}} for a
JSON formatter. Output: one line per (formatter, record) pair, formatter by
formatter: "O <hex>" (the UTF-8 of the output), "E <hex>" (the message of
the exception format() raised) or "C <hex>" (the constructor refused).
"""

import importlib
import json
import logging
import os
import struct
import sys
import time
import warnings

from record_clock import Clock

UNKNOWN_FILE = "(unknown file)"
UNKNOWN_FUNCTION = "(unknown function)"


def value(v):
    kind, x = v["t"], v["v"]
    if kind == "f":
        return struct.unpack(">d", bytes.fromhex(x))[0]
    return x  # str, int and bool come through JSON as they are


def make_record(r, with_host):
    clock = Clock()
    clock.now = r["created_ns"] / 1e9
    logging.time = clock
    logging._startTime = r["start_ns"] / 1e9
    try:
        rec = logging.LogRecord(
            r["name"], r["levelno"], r["pathname"] or UNKNOWN_FILE, r["lineno"], r["message"], None, None,
            r["funcName"] or UNKNOWN_FUNCTION,
        )
    finally:
        logging.time = time
    if r["pathname"] is None:
        # What Logger.makeRecord gives when findCaller fails.
        rec.filename = rec.module = UNKNOWN_FILE
    rec.process = r["process"]
    rec.processName = r["processName"]
    rec.thread = r["thread"]
    rec.threadName = r["threadName"]
    rec.exc_text = r["exc_text"]
    if with_host:
        # The hub's %(hostname)s; not an attribute a JSON formatter lists.
        rec.hostname = r["hostname"]
    for k, v in r["extra"]:
        setattr(rec, k, value(v))
    # As after QueueHandler.prepare: the message is already formatted.
    rec.message = r["message"]
    return rec


def hexed(text):
    return text.encode("utf-8", "surrogatepass").hex()


def build(spec, utc):
    if spec["json"]:
        module, _, name = spec["class"].rpartition(".")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            cls = getattr(importlib.import_module(module), name)
        f = cls(**spec["kwargs"])
    else:
        f = logging.Formatter(spec["fmt"], spec["datefmt"], spec["style"])
    if utc:
        f.converter = time.gmtime
    return f


def main():
    cases = json.load(sys.stdin)
    logging.addLevelName(5, "TRACE")
    records = cases["records"]
    out = []
    for spec in cases["formatters"]:
        try:
            f = build(spec, cases["utc"])
        except Exception as e:
            out.extend(["C " + hexed(str(e))] * len(records))
            continue
        for r in records:
            rec = make_record(r, not spec["json"])
            try:
                # Strict UTF-8, as a handler writes it: a lone surrogate
                # (from %c) fails the record there.
                out.append("O " + f.format(rec).encode("utf-8").hex())
            except Exception as e:
                out.append("E " + hexed(str(e)))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
