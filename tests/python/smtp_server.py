"""A mail server for the tests: Debian's aiosmtpd, writing every mail it
accepts to a mailbox file (one JSON line per mail: envelope, whether the
session was encrypted, who logged in, and the message's bytes).

usage: /usr/bin/python3 smtp_server.py PORT MAILBOX.jsonl [--starttls CERT KEY]
           [--ssl CERT KEY] [--auth USER PASSWORD_FILE]
Prints "ready" once it accepts connections.
"""

import base64
import json
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Mailbox:
    def __init__(self, path):
        self.out = open(path, "a", buffering=1)

    async def handle_DATA(self, server, session, envelope):
        login = getattr(session, "auth_data", None)
        self.out.write(
            json.dumps(
                {
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    "tls": server.transport.get_extra_info("ssl_object") is not None,
                    "login": login.decode() if isinstance(login, bytes) else None,
                    "data_b64": base64.b64encode(envelope.original_content).decode("ascii"),
                }
            )
            + "\n"
        )
        return "250 OK"


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    args = sys.argv[3:]
    kwargs = {}

    def context(i):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args[i + 1], args[i + 2])
        return ctx

    if "--starttls" in args:
        kwargs.update(tls_context=context(args.index("--starttls")), require_starttls=True)
    if "--ssl" in args:
        kwargs.update(ssl_context=context(args.index("--ssl")))
    if "--auth" in args:
        i = args.index("--auth")
        user, password = args[i + 1].encode(), open(args[i + 2], "rb").read().strip()

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login == user and auth_data.password == password
            return AuthResult(success=ok, auth_data=auth_data.login if ok else None)

        # aiosmtpd 1.4 only counts STARTTLS as TLS for AUTH; an SMTPS
        # session is encrypted from its first byte.
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls="--ssl" not in args)
    controller = Controller(Mailbox(path), hostname="127.0.0.1", port=port, server_hostname="localhost", **kwargs)
    controller.start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
