"""An independent ZooKeeper client for Axon's tests, built on kazoo (not on Axon's code).

Reads one JSON command per line on stdin and answers one JSON line on stdout, so one
process serves a whole test. Commands:
  {"op": "children", "path": p}                  -> {"ok": [names]}   (null if no node)
  {"op": "get", "path": p}                       -> {"ok": {"data": text, "owner": int, "ctime": int}} (null if none)
  {"op": "records", "path": p}                   -> {"ok": {child: text}} data of every child
      with "within": seconds, each read gives up after that long (while ZooKeeper is away, say)
  {"op": "create", "path": p, "data": text, "ephemeral": bool, "sequence": bool}
                                                 -> {"ok": created_path}
      with "acl": "no-read", the node is created with an ACL that lets nobody read it
  {"op": "create_many", "nodes": [[p, text], ...]} -> {"ok": count}  persistent, parents as needed
  {"op": "set", "path": p, "data": text}         -> {"ok": null}
  {"op": "set_acl", "path": p, "acl": "read-only" | "open"} -> {"ok": null}
  {"op": "delete", "path": p, "recursive": bool} -> {"ok": null}
  {"op": "session"}                              -> {"ok": "0x..."}
  {"op": "observe", "path": p}                   -> {"ok": null}  starts watching p: every
      few milliseconds and at every change of its children, the data of every child is read
  {"op": "observed"}                             -> {"ok": [[t_ns, {child: text}], ...]}
      stops watching; each distinct view in order (t_ns as in "timed"), a missing path as {}
  "create" and "delete" with "timed": true answer {"ok": {"path": p, "acked_ns": t}}: t is
  CLOCK_MONOTONIC (as Rust's Instant reads it) in nanoseconds, taken as ZooKeeper's answer
  reached this client, so a caller can time from that moment on the same clock
Errors answer {"error": "..."}.
"""

import json
import logging
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.security import ACL, ANYONE_ID_UNSAFE, Permissions

ACLS = {
    "no-read": [ACL(Permissions.ALL & ~Permissions.READ, ANYONE_ID_UNSAFE)],
    "read-only": [ACL(Permissions.READ, ANYONE_ID_UNSAFE)],
    "open": [ACL(Permissions.ALL, ANYONE_ID_UNSAFE)],
}


def main():
    logging.basicConfig(level=logging.ERROR)
    hosts = sys.argv[1]
    # Reconnect and retry quickly: tests observe ZooKeeper right after restarting it.
    retry = {"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.5}
    client = KazooClient(hosts=hosts, timeout=10.0, connection_retry=retry, command_retry=retry)
    client.start(timeout=30)
    print(json.dumps({"ok": "ready"}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = {"ok": handle(client, json.loads(line))}
        except Exception as exc:  # reported to the test, which decides
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
    client.stop()


class Observer:
    """Reads a path's children and their data over and over, and at every change of the
    children (a watch), keeping each distinct view with the time it was read."""

    def __init__(self, client, path):
        self.client, self.path = client, path
        self.views = []
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def read(self):
        try:
            children = self.client.get_children(self.path, watch=lambda _event: self.wake.set())
        except NoNodeError:
            return {}
        view = {}
        for child in children:
            try:
                data, _ = self.client.get(f"{self.path}/{child}")
            except NoNodeError:
                continue
            view[child] = data.decode("utf-8", "replace")
        return view

    def run(self):
        while not self.stop.is_set():
            try:
                view = self.read()
            except Exception:  # a moment without ZooKeeper: try again
                view = None
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            if view is not None and (not self.views or self.views[-1][1] != view):
                self.views.append([now, view])
            self.wake.wait(0.002)
            self.wake.clear()

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.views


OBSERVERS = {}


def handle(client, cmd):
    op, path = cmd["op"], cmd.get("path")
    if op == "observe":
        OBSERVERS["current"] = Observer(client, path)
        return None
    if op == "observed":
        return OBSERVERS.pop("current").finish()
    if op == "children":
        try:
            return sorted(client.get_children(path))
        except NoNodeError:
            return None
    if op == "get":
        try:
            data, stat = client.get(path)
        except NoNodeError:
            return None
        return {"data": data.decode("utf-8", "replace"), "owner": stat.ephemeralOwner, "ctime": stat.ctime}
    if op == "records":
        within = cmd.get("within")
        out = {}
        try:
            children = client.get_children_async(path).get(timeout=within)
        except NoNodeError:
            return {}
        for child in children:
            try:
                data, _ = client.get_async(f"{path}/{child}").get(timeout=within)
            except NoNodeError:
                continue
            out[child] = data.decode("utf-8", "replace")
        return out
    if op == "create":
        created = client.create(
            path,
            cmd.get("data", "").encode(),
            acl=ACLS[cmd["acl"]] if cmd.get("acl") else None,
            ephemeral=cmd.get("ephemeral", False),
            sequence=cmd.get("sequence", False),
            makepath=True,
        )
        return timed(cmd, created)
    if op == "set":
        client.set(path, cmd["data"].encode())
        return None
    if op == "create_many":
        for node_path, data in cmd["nodes"]:
            client.create(node_path, data.encode(), makepath=True)
        return len(cmd["nodes"])
    if op == "set_acl":
        client.set_acls(path, ACLS[cmd["acl"]])
        return None
    if op == "delete":
        client.delete(path, recursive=cmd.get("recursive", False))
        return timed(cmd, None)
    if op == "session":
        return hex(client.client_id[0])
    raise ValueError(f"unknown op {op}")


def timed(cmd, result):
    if not cmd.get("timed"):
        return result
    return {"path": result, "acked_ns": time.clock_gettime_ns(time.CLOCK_MONOTONIC)}


if __name__ == "__main__":
    main()
