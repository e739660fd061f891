#!/usr/bin/python3
"""Python gRPC (C-core) Watch client for runc-shim (run by test/integration/interop.test.ts).

Opens --streams watch-all streams (WatchRequest id "", max_batch --max-batch)
at once on one channel, reads each until its SYNCED event, cancels them, and
prints one JSON document on stdout:

  {"streams": [{"messages": N, "events": N, "initial": [ID, ...],
                "kinds": {"INITIAL": N, "SYNCED": 1, ...}, "statuses": {"STOPPED": N, ...}}, ...]}

`initial` lists the container ids of the INITIAL events in the order they
arrived; a batched message (`batch` set) counts once in `messages` and each
of its events in `events`. Stubs are generated as interop.py does.

Usage: /usr/bin/python3 test/interop/watch.py --target unix:///path/shim.sock --streams 4 [--max-batch 0]
Needs Debian's python3-grpcio and python3-grpc-tools (use /usr/bin/python3).
Exit codes: 0 every stream synced; 1 a stream failed or timed out (the error on stderr).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop import generate_stubs, load_modules  # noqa: E402


def read_until_synced(shim_pb2, call, out):
    """Reads `call` until SYNCED; fills `out` (a dict) with what it saw."""
    kind_name = shim_pb2.WatchEventKind.Name
    status_name = shim_pb2.ContainerStatus.Name
    out.update(messages=0, events=0, initial=[], kinds={}, statuses={})
    for m in call:
        out["messages"] += 1
        events = list(m.batch.events) if m.HasField("batch") else [m]
        for e in events:
            out["events"] += 1
            k = kind_name(e.kind)
            out["kinds"][k] = out["kinds"].get(k, 0) + 1
            if k == "WATCH_EVENT_KIND_INITIAL":
                out["initial"].append(e.container.id)
                if e.container.HasField("state"):
                    s = status_name(e.container.state.status)
                    out["statuses"][s] = out["statuses"].get(s, 0) + 1
            if k == "WATCH_EVENT_KIND_SYNCED":
                return


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", required=True)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--max-batch", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for every stream to sync")
    args = p.parse_args()

    out_dir = tempfile.mkdtemp(prefix="runc-shim-watch-")
    try:
        for note in generate_stubs(out_dir):
            print(f"watch.py: note: {note}", file=sys.stderr)
        shim_pb2, shim_pb2_grpc, _, _ = load_modules(out_dir)
        with grpc.insecure_channel(args.target) as channel:
            stub = shim_pb2_grpc.ShimServiceStub(channel)
            calls = [stub.Watch(shim_pb2.WatchRequest(id="", max_batch=args.max_batch)) for _ in range(args.streams)]
            results = [{} for _ in calls]
            errors = []

            def run(i):
                try:
                    read_until_synced(shim_pb2, calls[i], results[i])
                except grpc.RpcError as e:
                    errors.append(f"stream {i}: {e.code().name}: {e.details()}")

            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(args.timeout)
            for c in calls:
                c.cancel()
            if any(t.is_alive() for t in threads):
                errors.append(f"not every stream synced within {args.timeout} s")
            if errors:
                print("\n".join(errors), file=sys.stderr)
                sys.exit(1)
        json.dump({"streams": results}, sys.stdout)
        sys.stdout.write("\n")
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
