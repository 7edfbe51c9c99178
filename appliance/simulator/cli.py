"""``python -m appliance simulate``: a modem bank a person can drive from a terminal.

``simulate --modems 4 --dir DIR`` runs until Ctrl-C, printing the ports and a ready
``[[modems]]`` snippet. A control socket (``DIR/control.sock``, one JSON object per line
each way) lets other terminals act as citizens and technicians::

    python -m appliance simulate send  --dir DIR --from +923001234567 --to sim0 "35202-…"
    python -m appliance simulate inbox --dir DIR --number +923001234567 [--wait 30]
    python -m appliance simulate fault --dir DIR --modem sim0 hang=true cms_error_rate=0.2
    python -m appliance simulate unplug|replug --dir DIR --modem sim0
    python -m appliance simulate status --dir DIR

Until ``appliance/cli.py`` dispatches to :func:`simulate_main`, run it as
``python -m appliance.simulator.cli``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import socketserver
import sys
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

from appliance.simulator.profiles import PROFILES
from appliance.simulator.bank import Simulator

CONTROL = "control.sock"
CLIENT_COMMANDS = ("send", "inbox", "fault", "unplug", "replug", "status")


# --- the server side ---------------------------------------------------------------------------


def _handle(sim: Simulator, request: dict[str, Any]) -> dict[str, Any]:
    """Carry out one control request; raises ValueError/KeyError for a bad one."""
    op = request.get("op")
    if op == "send":
        sim.citizen_send(str(request["from"]), request["to"], str(request["text"]))
        return {}
    if op == "inbox":
        number = str(request["number"])
        wait = float(request.get("wait", 0))
        if wait:
            sim.wait_for(lambda: sim.inbox_messages(number), timeout=min(wait, 300))
        return {"messages": [{"from": r.sender, "modem": r.modem, "text": r.text,
                              "parts": r.parts, "time": r.time}
                             for r in sim.inbox_messages(number)]}
    if op == "fault":
        sim.modem(request["modem"]).faults.update(dict(request.get("set", {})))
        return {"faults": sim.modem(request["modem"]).faults.as_dict()}
    if op in ("unplug", "replug"):
        getattr(sim.modem(request["modem"]), op)()
        return {}
    if op == "status":
        return {"modems": [{"name": m.name, "port": m.port, "profile": m.profile.name,
                            "number": m.number, "plugged": m.plugged,
                            "stored": len(m.stored()), "waiting": sim.network.pending(m),
                            "faults": m.faults.as_dict()} for m in sim.modems],
                "submitted": len(sim.submitted), "deliveries": sim.deliveries_count(),
                "deferred": sim.deferred_count()}
    raise ValueError(f"unknown op {op!r}; use one of {', '.join(CLIENT_COMMANDS)}")


class _ControlServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, sim: Simulator) -> None:
        self.sim = sim
        super().__init__(str(path), _ControlHandler)


class _ControlHandler(socketserver.StreamRequestHandler):
    server: _ControlServer

    def handle(self) -> None:
        for raw in self.rfile:
            try:
                reply = {"ok": True, **_handle(self.server.sim, json.loads(raw))}
            except (ValueError, KeyError, TypeError, TimeoutError) as exc:
                reply = {"ok": False, "error": str(exc)}
            self.wfile.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")


def _run(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    control = directory / CONTROL
    if control.exists():
        try:
            _request(directory, {"op": "status"})
            print(f"a simulator already runs in {directory}; stop it first", file=sys.stderr)
            return 1
        except OSError:
            control.unlink()  # left behind by a simulator that was killed
    sim = Simulator(directory, args.modems, profile=args.profile, time_scale=args.time_scale,
                    seed=args.seed)
    for modem in sim.modems:
        modem.faults.cmgs_latency = args.latency
    stop = threading.Event()
    # Ctrl-C and SIGTERM stop the bank cleanly. SIGINT is set here, not left to Python's
    # KeyboardInterrupt: a process started with SIGINT ignored (from a script's background
    # job, as CI may run it) would otherwise never stop on it.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with sim:
        server = _ControlServer(control, sim)
        threading.Thread(target=server.serve_forever, name="sim-control", daemon=True).start()
        print(f"Simulating {len(sim.modems)} modems in {directory}")
        for modem in sim.modems:
            print(f"  {modem.name}  {modem.port}  {modem.profile.name:7} SIM {modem.number}")
        print("\nFor appliance.toml:\n")
        print(sim.config_snippet())
        cmd = "python -m appliance simulate"
        print(f'As a citizen:  {cmd} send --dir {directory} --from +923001234567 --to sim0 "…"')
        print(f"Replies:       {cmd} inbox --dir {directory} --number +923001234567")
        print(f"Control socket {control}; Ctrl-C stops.\nready", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        server.shutdown()
        server.server_close()
        control.unlink(missing_ok=True)
    print("stopped")
    return 0


# --- the client side ---------------------------------------------------------------------------


def _request(directory: Path, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout + float(request.get("wait", 0)))
        sock.connect(str(directory / CONTROL))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return dict(json.loads(data))


def _parse_assignments(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"fault setting {pair!r} must look like name=value")
        out[key.strip()] = value.strip()
    return out


def _client(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    request: dict[str, Any] = {"op": args.command}
    if args.command == "send":
        request.update({"from": args.sender, "to": args.to, "text": " ".join(args.text)})
    elif args.command == "inbox":
        request.update({"number": args.number, "wait": args.wait})
    elif args.command == "fault":
        request.update({"modem": args.modem, "set": _parse_assignments(args.settings)})
    elif args.command in ("unplug", "replug"):
        request["modem"] = args.modem
    try:
        reply = _request(directory, request)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"no simulator runs in {directory} ({directory / CONTROL} does not answer); "
              f"start one with: python -m appliance simulate --dir {directory}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"simulator refused {args.command}: {reply.get('error')}", file=sys.stderr)
        return 1
    _show(args.command, reply)
    return 0


def _show(command: str, reply: dict[str, Any]) -> None:
    if command == "inbox":
        for message in reply["messages"]:
            print(f"from {message['from']} ({message['modem']}): {message['text']}")
        if not reply["messages"]:
            print("(no messages)")
    elif command == "status":
        for m in reply["modems"]:
            state = "plugged" if m["plugged"] else "UNPLUGGED"
            print(f"{m['name']}  {m['profile']:7} {m['number']}  {state}  stored {m['stored']}"
                  f"  waiting {m['waiting']}")
        print(f"submitted {reply['submitted']}  delivered {reply['deliveries']}  "
              f"deferred {reply['deferred']}")
    elif command == "fault":
        print(" ".join(f"{k}={v}" for k, v in reply["faults"].items()))
    else:
        print("ok")


#: One line per client command, for ``simulate --help`` and each command's own help.
CLIENT_HELP = {
    "send": "a citizen sends an SMS to one simulated modem (its name or SIM number)",
    "inbox": "the SMS a phone number has received from the unit (the replies)",
    "fault": "set faults on one modem, e.g. hang=true, registered=false, rssi=5",
    "unplug": "pull one modem's USB cable (its port disappears)",
    "replug": "plug it back in (the same port name comes back)",
    "status": "each modem's profile, number, plug state, stored and waiting SMS",
}


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    from .faults import Faults

    commands = "\n".join(f"  {name:8} {CLIENT_HELP[name]}" for name in CLIENT_COMMANDS)
    run = argparse.ArgumentParser(
        prog="python -m appliance simulate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a bank of simulated GSM modems on ptys (stays in the foreground; "
                    "Ctrl-C stops it). Point a configuration's ports at DIR/sim0, DIR/sim1, "
                    "... to rehearse a unit without hardware.",
        epilog=f"From another terminal, with the same --dir:\n{commands}\n"
               "Each has its own --help, e.g. simulate send --help.")
    run.add_argument("--modems", type=int, default=4, help="how many modems (default 4)")
    run.add_argument("--dir", required=True, help="where the port symlinks and socket go")
    run.add_argument("--profile", default="sim800",
                     help=f"modem family, or a comma list to mix ({', '.join(PROFILES)})")
    run.add_argument("--latency", type=float, default=3.0,
                     help="seconds an AT+CMGS takes, as on a real network (default 3)")
    run.add_argument("--time-scale", type=float, default=1.0, help="multiply every delay")
    run.add_argument("--seed", type=int, default=0,
                     help="seed of the simulated network's randomness (same seed, same run)")
    run.add_argument("-v", "--verbose", action="store_true", help="log AT traffic")

    client = argparse.ArgumentParser(prog="python -m appliance simulate",
                                     description="Talk to a running simulator.")
    sub = client.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {name: sub.add_parser(name, help=CLIENT_HELP[name],
                                    description=CLIENT_HELP[name][0].upper()
                                    + CLIENT_HELP[name][1:] + ".")
               for name in CLIENT_COMMANDS}
    for parser in parsers.values():
        parser.add_argument("--dir", required=True,
                            help="the --dir the simulator was started with")
    parsers["send"].add_argument("--from", dest="sender", required=True,
                                 help="the citizen's phone number, e.g. +923001234567")
    parsers["send"].add_argument("--to", required=True, help="modem name or SIM number")
    parsers["send"].add_argument("text", nargs="+", help="the SMS text, e.g. a CNIC")
    parsers["inbox"].add_argument("--number", required=True,
                                  help="the phone number whose received SMS to show")
    parsers["inbox"].add_argument("--wait", type=float, default=0.0,
                                  help="wait up to this many seconds for a message")
    names = ", ".join(f.name for f in fields(Faults) if not f.name.startswith("_"))
    parsers["fault"].add_argument("settings", nargs="+", metavar="name=value",
                                  help=f"one or more faults: {names}")
    for name in ("fault", "unplug", "replug"):
        parsers[name].add_argument("--modem", required=True, help="the modem's name, e.g. sim1")
    return run, client


def simulate_main(argv: list[str]) -> int:
    """Entry point for ``python -m appliance simulate …``; returns the exit status."""
    run, client = build_parsers()
    if argv and argv[0] in CLIENT_COMMANDS:
        args = client.parse_args(argv)
        try:
            return _client(args)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
    args = run.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=5 if args.verbose else logging.WARNING,
                            format="%(asctime)s %(name)s %(message)s")
    try:
        return _run(args)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(simulate_main(sys.argv[1:]))
