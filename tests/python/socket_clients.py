"""Python's own clients for the hub, standard library only.

pool TARGET OUTDIR COUNT WORKERS
    A multiprocessing pool: worker i logs COUNT records to logger "w<i>"
    through logging.handlers.SocketHandler (TARGET is "HOST:PORT" or a Unix
    socket path) and, with the same format, through its own FileHandler into
    OUTDIR/expected-<i>.log: the bytes the hub's file must match. Record 5
    carries a list in an extra field, record 7 a real traceback
    (log.exception), record 9 stack_info.
datagrams UDP_HOST:PORT UNIX_PATH OUTDIR COUNT
    The same records (one process) through DatagramHandler over UDP and over
    a Unix datagram socket, into loggers "udp" and "dgram", and
    OUTDIR/expected-udp.log / expected-dgram.log.
objects TARGET
    Two records whose extra fields hold objects (a Decimal, a datetime): the
    hub must show placeholders, never unpickle them.
"""
import datetime
import decimal
import logging
import logging.handlers
import multiprocessing
import os
import sys

FMT = (
    "%(asctime)s|%(created)f|%(msecs)03d|%(relativeCreated).3f|%(name)s|%(levelno)d|%(levelname)s|"
    "%(pathname)s|%(filename)s|%(module)s|%(lineno)d|%(funcName)s|%(thread)d|%(threadName)s|"
    "%(process)d|%(processName)s|%(seq)d|%(tags)s|%(message)s"
)
LEVELS = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]


class Handler(logging.handlers.SocketHandler):
    # Python's SocketHandler gives every send 1 s and silently drops the
    # record when that passes (a busy CI machine can stall that long); the
    # test counts every record, so it waits longer. Nothing else changes.
    def makeSocket(self, timeout=1):
        return super().makeSocket(timeout=60)


def socket_handler(target):
    if target.startswith("/"):
        return Handler(target, None)
    host, port = target.rsplit(":", 1)
    return Handler(host, int(port))


def emit_all(logger, count, tag):
    for i in range(count):
        extra = {"seq": i, "tags": ["list", 1, None, 2.5, "é"] if i == 5 else "plain"}
        if i == 7:
            try:
                {}["missing"]
            except KeyError:
                logger.exception("failed at %d in %s", i, tag, extra=extra)
            continue
        if i == 9:
            logger.warning("with a stack at %d", i, stack_info=True, extra=extra)
            continue
        logger.log(LEVELS[i % 5], "record %d of %s: %r %s 100%%", i, tag, {"k": i}, "ünïcødé €", extra=extra)


def with_file(logger, path):
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setFormatter(logging.Formatter(FMT))
    logger.addHandler(fh)
    return fh


def pool_worker(args):
    idx, target, outdir, count = args
    logger = logging.getLogger("w%d" % idx)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    sh = socket_handler(target)
    logger.addHandler(sh)
    fh = with_file(logger, os.path.join(outdir, "expected-%d.log" % idx))
    emit_all(logger, count, "worker %d" % idx)
    sh.close()
    fh.close()
    return os.getpid()


def main():
    mode = sys.argv[1]
    if mode == "pool":
        target, outdir, count, workers = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        with multiprocessing.Pool(workers) as pool:
            pids = pool.map(pool_worker, [(i, target, outdir, count) for i in range(workers)], chunksize=1)
        assert len(set(pids)) == workers, pids
    elif mode == "datagrams":
        udp, path, outdir, count = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
        host, port = udp.rsplit(":", 1)
        for name, handler in [
            ("udp", logging.handlers.DatagramHandler(host, int(port))),
            ("dgram", logging.handlers.DatagramHandler(path, None)),
        ]:
            logger = logging.getLogger(name)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
            logger.addHandler(handler)
            fh = with_file(logger, os.path.join(outdir, "expected-%s.log" % name))
            emit_all(logger, count, name)
            handler.close()
            fh.close()
    elif mode == "objects":
        logger = logging.getLogger("objects")
        logger.propagate = False
        sh = socket_handler(sys.argv[2])
        logger.addHandler(sh)
        logger.error("a decimal", extra={"seq": 1, "tags": decimal.Decimal("1.5")})
        logger.error("a datetime", extra={"seq": 2, "tags": datetime.datetime(2026, 1, 2)})
        sh.close()
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
