#!/usr/bin/env python3
"""The peers' reply script: gammu-smsd's RunOnReceive and smstools3's eventhandler, answering
every SMS exactly as the appliance would (same registry, same responder, same templates).

A technician who picks gammu-smsd or smstools3 instead of the appliance writes such a script;
the benchmark (scripts/bench.py) runs the peers with this one, so all three systems send
identical replies and only the SMS plumbing is compared.

Why a server, and why the hooks look spare: both daemons start the hook as a new process per
message. Measured on the dev box (CPU per start): Python with the responder and registry
imported 130 ms; ``python -S -E`` importing ``json`` and ``socket`` 25 ms (their ``re`` and
``enum`` imports); bare ``python -S -E`` 10 ms. So the lookup lives in one long-running
``serve`` process, as a careful deployment would have it, and the hooks import nothing but
``os``, ``sys`` and the C ``_socket`` module, speaking NUL-separated UTF-8. Without
``--socket`` a hook answers in-process: simpler, and slower.

    peer_reply.py serve --registry REG.db --socket S [--max-age-hours H]
    peer_reply.py gammu --smsdrc RC (--socket S | --registry REG.db) [IDS...]      # RunOnReceive
    peer_reply.py smstools --outgoing DIR (--socket S | --registry REG.db) EVENT FILE [ID]
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "firmware_config", "replies.toml")
GAMMU_INJECT = "gammu-smsd-inject"
SEP = "\0"
ERROR = "\1"


class LocalAnswer:
    """The appliance's own answer, ``(sender, text) -> (recipient, reply)``: responder,
    registry and the staleness rule (service/unit.py ``registry_view``), default policy."""

    def __init__(self, registry: str | os.PathLike[str],
                 templates: str | os.PathLike[str] = TEMPLATES,
                 max_age_hours: float = 72.0) -> None:
        if ROOT not in sys.path:
            sys.path.insert(0, ROOT)
        from datetime import timedelta
        from pathlib import Path

        from appliance.registry.lookup import Registry
        from appliance.rules.responder import Policy, load_templates

        self.registry = Registry(Path(registry))
        self.templates = load_templates(Path(templates))
        self.policy = Policy()
        self.max_age = timedelta(hours=max_age_hours)

    def __call__(self, sender: str, text: str) -> tuple[str, str]:
        from datetime import datetime, timezone

        from appliance.modem.pdu import normalise_number
        from appliance.registry.lookup import is_stale
        from appliance.rules.responder import RegistryState, respond

        info = self.registry.info()
        if not info.exists:
            state = RegistryState.MISSING
        elif is_stale(info, self.max_age, datetime.now(timezone.utc)):
            state = RegistryState.STALE
        else:
            state = RegistryState.OK
        reply = respond(text, self.registry.lookup, self.templates, self.policy, state)
        return normalise_number(sender), reply.text


class RemoteAnswer:
    """The same answer asked of a running ``serve`` over its Unix socket."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, sender: str, text: str) -> tuple[str, str]:
        return ask_server(self.path, sender, text)


def ask_server(path: str, sender: str, text: str) -> tuple[str, str]:
    import _socket  # the C module: `socket` would cost ~10 ms of imports per hook

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)  # blocking: waits while the listen backlog is full (unix(7))
        sock.settimeout(30)
        sock.sendall((sender + SEP + text).encode("utf-8"))
        sock.shutdown(_socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    answer = data.decode("utf-8")
    if not answer or answer.startswith(ERROR):
        raise RuntimeError(f"lookup server {path}: {answer[1:] or 'no answer'}")
    recipient, _, reply = answer.partition(SEP)
    return recipient, reply


def _answer_for(opts: dict[str, str]) -> LocalAnswer | RemoteAnswer:
    if opts.get("socket"):
        return RemoteAnswer(opts["socket"])
    if not opts.get("registry"):
        raise SystemExit("peer_reply: give --socket (a running `serve`) or --registry")
    return LocalAnswer(opts["registry"], opts.get("templates", TEMPLATES),
                       float(opts.get("max-age-hours", 72.0)))


# -- gammu-smsd RunOnReceive --------------------------------------------------------------

def incoming_from_gammu_env(env: dict[str, str]) -> tuple[str, str]:
    """Sender and whole text from the environment gammu-smsd gives RunOnReceive
    (gammu-smsd-run(7)): DECODED_1_TEXT holds a reassembled long SMS when there is one."""
    sender = env.get("SMS_1_NUMBER", "")
    if env.get("DECODED_1_TEXT"):
        return sender, env["DECODED_1_TEXT"]
    count = int(env.get("SMS_MESSAGES", "1") or "1")
    return sender, "".join(env.get(f"SMS_{i}_TEXT", "") for i in range(1, count + 1))


def gammu_hook(opts: dict[str, str], _ids: list[str]) -> int:
    sender, text = incoming_from_gammu_env(dict(os.environ))
    if not sender:
        return 0
    recipient, reply = _answer_for(opts)(sender, text)
    # -autolen: as many concatenated parts as the text needs; -unicode: UCS-2 (Urdu).
    argv = [GAMMU_INJECT, "-c", opts["smsdrc"], "TEXT", recipient, "-unicode",
            "-autolen", str(len(reply)), "-text", reply]
    null = os.open(os.devnull, os.O_RDWR)
    pid = os.posix_spawnp(GAMMU_INJECT, argv, dict(os.environ), file_actions=[
        (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)])
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"peer_reply: {GAMMU_INJECT} exited with {code}; reply to "
                         f"{recipient} not queued")
    return 0


# -- smstools3 eventhandler ----------------------------------------------------------------

def read_smstools_file(path: str) -> tuple[dict[str, str], str]:
    """Headers and body of an smstools message file (fileformat.html: "Header: value"
    lines, an empty line, the text; UTF-8 with incoming_utf8 = yes)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        raw = fh.read()
    head, _, body = raw.partition("\n\n")
    headers = {}
    for line in head.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return headers, body.rstrip("\n")


def smstools_hook(opts: dict[str, str], args: list[str]) -> int:
    if len(args) < 2:
        raise SystemExit("peer_reply smstools: expected EVENT FILE [ID]")
    if args[0] != "RECEIVED":
        return 0  # SENT, FAILED, REPORT, CALL: nothing to answer
    headers, text = read_smstools_file(args[1])
    sender = headers.get("From", "")
    if not sender:
        return 0
    recipient, reply = _answer_for(opts)(sender, text)
    outgoing = opts["outgoing"]
    # smstools must see a file appear whole: write it beside the spool, then rename it in
    # (what trust_outgoing = yes relies on, configure.html).
    name = f"reply-{os.getpid()}-{os.urandom(4).hex()}"
    tmp = os.path.join(os.path.dirname(os.path.abspath(outgoing)), "." + name)
    with open(tmp, "w", encoding="utf-8") as fh:
        # "Alphabet: UTF": a UTF-8 body, sent as UCS-2 when it does not fit GSM 7-bit.
        fh.write(f"To: {recipient.lstrip('+')}\nAlphabet: UTF\n\n{reply}")
    os.rename(tmp, os.path.join(outgoing, name))
    return 0


# -- serve ---------------------------------------------------------------------------------

def serve(registry: str, sock_path: str, templates: str, max_age_hours: float) -> int:
    import socketserver

    answer = LocalAnswer(registry, templates, max_age_hours)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                sender, _, text = self.rfile.read().decode("utf-8").partition(SEP)
                out = SEP.join(answer(sender, text))
            except Exception as exc:  # one bad request must not stop the server
                out = f"{ERROR}{type(exc).__name__}: {exc}"
            self.wfile.write(out.encode("utf-8"))

    class Server(socketserver.ThreadingUnixStreamServer):
        daemon_threads = True
        request_queue_size = 128  # every modem's hook may connect at the same instant

    if os.path.exists(sock_path):
        os.unlink(sock_path)
    with Server(sock_path, Handler) as server:
        print("ready", flush=True)  # the benchmark waits for this line
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def _parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``--name value`` options and positionals. Hand-rolled because argparse (and the
    ``re`` it imports) would double a hook's start-up cost."""
    opts: dict[str, str] = {}
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        if arg.startswith("--"):
            value = next(it, None)
            if value is None:
                raise SystemExit(f"peer_reply: {arg} needs a value")
            opts[arg[2:]] = value
        else:
            rest.append(arg)
    return opts, rest


REQUIRED = {"serve": ("registry", "socket"), "gammu": ("smsdrc",), "smstools": ("outgoing",)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in REQUIRED:
        print(__doc__, file=sys.stderr)
        return 2
    command = argv.pop(0)
    opts, rest = _parse(argv)
    missing = [f"--{name}" for name in REQUIRED[command] if name not in opts]
    if missing:
        raise SystemExit(f"peer_reply {command}: {', '.join(missing)} required")
    if command == "serve":
        return serve(opts["registry"], opts["socket"], opts.get("templates", TEMPLATES),
                     float(opts.get("max-age-hours", 72.0)))
    if command == "gammu":
        return gammu_hook(opts, rest)
    return smstools_hook(opts, rest)


if __name__ == "__main__":
    sys.exit(main())
