"""The logging cookbook's network receiver ("Sending and receiving logging
events across a network"): a socketserver that reads each length-prefixed
pickle, rebuilds the record with logging.makeLogRecord and hands it to a
logger, here with a FileHandler writing FORMAT to OUT. Standard library only.

    cookbook_receiver.py PORT OUT FORMAT [udp]

Prints "ready" once listening. The header is read in a loop (the cookbook's
recv(4) treats a short read as the end of the stream).
"""
import logging
import pickle
import socketserver
import struct
import sys


class StreamHandler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            chunk = self.connection.recv(4)
            while 0 < len(chunk) < 4:
                more = self.connection.recv(4 - len(chunk))
                if not more:
                    return
                chunk += more
            if len(chunk) < 4:
                break
            slen = struct.unpack(">L", chunk)[0]
            data = self.connection.recv(slen)
            while len(data) < slen:
                data = data + self.connection.recv(slen - len(data))
            handle(pickle.loads(data))


class DatagramHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data = self.request[0]
        handle(pickle.loads(data[4:]))


def handle(obj):
    record = logging.makeLogRecord(obj)
    logging.getLogger(record.name).handle(record)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    port, out, fmt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    h = logging.FileHandler(out, encoding="utf-8")
    h.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.addHandler(h)
    root.setLevel(logging.NOTSET)
    if len(sys.argv) > 4 and sys.argv[4] == "udp":
        server = socketserver.UDPServer(("127.0.0.1", port), DatagramHandler)
    else:
        server = Server(("127.0.0.1", port), StreamHandler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
