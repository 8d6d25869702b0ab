"""An HTTP server that records what it is sent, and python3's own HTTPHandler
as the oracle of the hub's form fields.

usage:
  python3 http_collector.py serve OUT.jsonl [--plan 503,200] [--hang SECONDS]
      [--retry-after N] [--tls CERT KEY]
      Prints its port on the first line of stdout, then answers requests:
      the plan's statuses in turn (then 200), the first request after a
      wait of --hang seconds (a server that hangs); over HTTPS with --tls. Each request is one
      JSON line in OUT: method, path, headers, the body (gunzipped when
      Content-Encoding says gzip), the status answered, and for OTLP bodies
      (Content-Type application/json on /v1/logs) the request as parsed by
      the opentelemetry-proto package (google.protobuf.json_format), or the
      parser's error.
  python3 http_collector.py send SPEC.json
      Logs SPEC's records through logging.handlers.HTTPHandler behind a
      QueueHandler's prepare(), as a QueueListener hands them on.
  python3 http_collector.py mail SPEC.json
      Logs SPEC's records through logging.handlers.SMTPHandler (the oracle
      of the hub's mails).
"""

import base64
import gzip
import http.server
import json
import logging
import logging.handlers
import sys
import threading
import time

from record_clock import Clock


def serve(out_path, plan, hang, retry_after, tls=None):
    lock = threading.Lock()
    state = {"n": 0}
    out = open(out_path, "a", buffering=1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                n = state["n"]
                state["n"] += 1
            if hang and n == 0:
                time.sleep(hang)
            status = plan[n] if n < len(plan) else 200
            entry = {
                "n": n,
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "status": status,
            }
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
                entry["gzip"] = True
            entry["body_b64"] = base64.b64encode(body).decode("ascii")
            if self.command == "POST" and self.path.endswith("/v1/logs"):
                try:
                    from google.protobuf import json_format
                    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
                        ExportLogsServiceRequest,
                    )

                    msg = json_format.Parse(body.decode("utf-8"), ExportLogsServiceRequest())
                    entry["otlp"] = json_format.MessageToDict(msg)
                except Exception as e:  # the test shows it
                    entry["otlp_error"] = "%s: %s" % (type(e).__name__, e)
            # Written before the answer: a sender that waits for it sends
            # the next request only then, so the mailbox keeps its order.
            with lock:
                out.write(json.dumps(entry) + "\n")
            text = b"" if status == 200 else ("status %d from the test server\nsecond line\n" % status).encode()
            self.send_response(status)
            if retry_after is not None and status in (429, 503):
                self.send_header("Retry-After", str(retry_after))
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        do_GET = handle_any
        do_POST = handle_any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls:
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def send(spec_path):
    spec = json.load(open(spec_path))
    clock = Clock()
    logging.time = clock
    creds = tuple(spec["credentials"]) if spec.get("credentials") else None
    handler = logging.handlers.HTTPHandler(spec["host"], spec["url"], method=spec["method"], credentials=creds)
    queue_handler = logging.handlers.QueueHandler(None)
    # relativeCreated counts from the hub's start, which only the hub knows:
    # taken from what it sent for the same record.
    import urllib.parse

    relatives = [float(dict(urllib.parse.parse_qsl(q, keep_blank_values=True))["relativeCreated"]) for q in spec["hub_fields"]]
    for r, relative in zip(spec["records"], relatives):
        handler.handle(queue_handler.prepare(make_record(r, relative, clock)))


def make_record(r, relative, clock):
    """A LogRecord with the spec's attributes, in the order Python sets them."""
    clock.now = r["created_ns"] / 1e9
    record = logging.LogRecord(
        r["name"],
        r["levelno"],
        r["pathname"] or "(unknown file)",
        r["lineno"],
        r["message"],
        None,
        None,
        func=r["funcName"] or "(unknown function)",
    )
    record.relativeCreated = relative
    record.thread = r["thread"]
    record.threadName = r["threadName"] or "Thread-%d" % r["thread"]
    record.processName = r["processName"]
    record.process = r["process"]
    record.exc_text = r["exc_text"]
    for k, v in r["extra"].items():
        setattr(record, k, v)
    return record


def mail(spec_path):
    """SPEC's records through logging.handlers.SMTPHandler, formatted with SPEC's format."""
    spec = json.load(open(spec_path))
    clock = Clock()
    logging.time = clock
    handler = logging.handlers.SMTPHandler(
        ("127.0.0.1", spec["port"]), spec["fromaddr"], spec["toaddrs"], spec["subject"]
    )
    handler.setFormatter(logging.Formatter(spec["format"]))
    for r in spec["records"]:
        handler.handle(make_record(r, 0.0, clock))

if __name__ == "__main__":
    if sys.argv[1] == "serve":
        args = sys.argv[3:]
        opt = lambda name, default: args[args.index(name) + 1] if name in args else default
        plan = [int(s) for s in opt("--plan", "").split(",") if s]
        ra = opt("--retry-after", None)
        tls = (args[args.index("--tls") + 1], args[args.index("--tls") + 2]) if "--tls" in args else None
        serve(sys.argv[2], plan, float(opt("--hang", 0)), int(ra) if ra is not None else None, tls)
    elif sys.argv[1] == "mail":
        mail(sys.argv[2])
    else:
        send(sys.argv[2])
