#!/usr/bin/python3
"""Python gRPC interop client for runc-shim (run by test/integration/interop.test.ts).

Generates Python stubs at run time, into a temporary directory, from the
repository's proto/runcshim/v1/shim.proto and from google/rpc/status.proto and
google/rpc/error_details.proto of the npm package google-proto-files
(google/protobuf/*.proto come from grpc_tools' bundled includes), then makes the
calls listed on stdin against the server and prints one JSON document on
stdout, a list with one entry per call.

Each call on stdin is {"rpc": NAME, "id": ID, "request": {FIELD: VALUE, ...}}:
NAME is any unary method of runcshim.v1.ShimService (State, Start, Create,
Kill, Pause, Resume, Delete), ID goes to the request's `id` field, and
the optional "request" object holds the request message's other fields by
their proto names (e.g. {"bundle": "/b", "stdout": "/tmp/out"} for Create,
{"signal": 9, "all": true} for Kill, {"force": true} for Delete), so a new
field or method needs no change here. Entries without "request" (the older
format) send the id alone.

  ok:    {"rpc", "id", "ok": true, "response": {...}}
  error: {"rpc", "id", "ok": false, "code": "NOT_FOUND", "message": "...",
          "errorInfo": {"reason", "domain", "metadata"} or null,
          "detailsStatus": {"code": 5, "message": "..."} or null}

errorInfo is decoded from the google.rpc.Status in the grpc-status-details-bin
trailing metadata; detailsStatus is that Status's own code and message.
A StateResponse is printed as state_dict() does; any other response as its
fields by JSON name, every field present (defaults included: {"pid": 0}, and
{} for an empty message).

Usage: /usr/bin/python3 test/interop/interop.py --target unix:///path/shim.sock \
           < '[{"rpc": "State", "id": "c1"}, {"rpc": "Kill", "id": "c1", "request": {"signal": 9}}]'

Needs Debian's python3-grpcio and python3-grpc-tools (use /usr/bin/python3).
Exit codes: 0 all calls made (errors from the server are results, not
failures), 2 bad usage (an unknown method, a streaming one, an unknown request
field or a value of the wrong type) or stub generation failed.
"""

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import grpc
import grpc_tools

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo"


def _protoc(args):
    """Runs `python3 -m grpc_tools.protoc ARGS`; returns (exit code, stderr)."""
    r = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *args], capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def fail(message):
    """Prints `message` on stderr and exits 2."""
    print(f"interop.py: {message}", file=sys.stderr)
    sys.exit(2)


def generate_stubs(out_dir, repo=REPO):
    """Runs grpc_tools.protoc for shim.proto (messages + gRPC stubs) and google.rpc status/error_details (messages).

    Debian bookworm's python3-grpc-tools (1.14) bundles protoc 3.5, which does
    not know proto3 `optional` (error_details.proto uses it in QuotaFailure).
    When protoc rejects the file for that reason only, it is compiled again from
    a temporary copy with the `optional` labels dropped: the wire format is the
    same and ErrorInfo has no such field. Returns notes about what was done.
    """
    notes = []
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    google_protos = os.path.join(repo, "node_modules", "google-proto-files")
    if not os.path.isfile(os.path.join(google_protos, "google", "rpc", "status.proto")):
        fail(f"{google_protos}/google/rpc/status.proto is missing: run npm ci")
    includes = ["-I", os.path.join(repo, "proto"), "-I", wkt, "-I", google_protos]
    code, err = _protoc([*includes, "--python_out=" + out_dir, "--grpc_python_out=" + out_dir, "runcshim/v1/shim.proto"])
    if code != 0:
        fail(f"protoc failed for runcshim/v1/shim.proto: {err}")
    rpc_files = ["google/rpc/status.proto", "google/rpc/error_details.proto"]
    code, err = _protoc([*includes, "--python_out=" + out_dir, *rpc_files])
    if code != 0 and "optional" in err:
        shadow = os.path.join(out_dir, "_proto_src")
        os.makedirs(os.path.join(shadow, "google", "rpc"))
        with open(os.path.join(google_protos, "google", "rpc", "error_details.proto"), encoding="utf-8") as f:
            text = re.sub(r"(?m)^(\s*)optional\s+", r"\1", f.read())
        with open(os.path.join(shadow, "google", "rpc", "error_details.proto"), "w", encoding="utf-8") as f:
            f.write(text)
        notes.append(f"protoc rejected proto3 optional ({err.splitlines()[0]}); compiled error_details.proto without the optional labels")
        code, err = _protoc(["-I", shadow, *includes, "--python_out=" + out_dir, *rpc_files])
    if code != 0:
        fail(f"protoc failed for {rpc_files}: {err}")
    return notes


def load_modules(out_dir):
    """Imports the generated modules (google.rpc.* merges into the `google` namespace package)."""
    sys.path.insert(0, out_dir)
    importlib.invalidate_caches()
    shim_pb2 = importlib.import_module("runcshim.v1.shim_pb2")
    shim_pb2_grpc = importlib.import_module("runcshim.v1.shim_pb2_grpc")
    status_pb2 = importlib.import_module("google.rpc.status_pb2")
    error_details_pb2 = importlib.import_module("google.rpc.error_details_pb2")
    return shim_pb2, shim_pb2_grpc, status_pb2, error_details_pb2


def state_dict(shim_pb2, r):
    """The canonical form of a StateResponse shared with the TypeScript side."""
    return {
        "id": r.id,
        "bundle": r.bundle,
        "pid": r.pid,
        "status": shim_pb2.ContainerStatus.Name(r.status),
        "rootfs": r.rootfs,
        "created": {"seconds": r.created.seconds, "nanos": r.created.nanos},
        "annotations": dict(sorted(r.annotations.items())),
        "owner": r.owner,
        "ociVersion": r.oci_version,
    }


def response_dict(shim_pb2, r):
    """The canonical form of a response: StateResponse as state_dict, any other by JSON field name, defaults included."""
    if r.DESCRIPTOR.full_name == "runcshim.v1.StateResponse":
        return state_dict(shim_pb2, r)
    out = {}
    for f in r.DESCRIPTOR.fields:
        if f.label == f.LABEL_REPEATED or f.type == f.TYPE_MESSAGE:
            fail(f"{r.DESCRIPTOR.full_name}.{f.name}: only scalar response fields are printed")
        value = getattr(r, f.name)
        out[f.json_name] = f.enum_type.values_by_number[value].name if f.enum_type is not None else value
    return out


def build_request(shim_pb2, rpc, cid, fields):
    """The method descriptor and request message of one call: `id` (when the request has one) plus `fields` by proto name."""
    service = shim_pb2.DESCRIPTOR.services_by_name["ShimService"]
    method = service.methods_by_name.get(rpc)
    if method is None:
        fail(f"unknown rpc {rpc!r} (ShimService has {sorted(service.methods_by_name)})")
    if method.server_streaming or method.client_streaming:
        fail(f"rpc {rpc!r} streams: only unary methods are supported")
    req_cls = getattr(shim_pb2, method.input_type.name)
    if not isinstance(fields, dict):
        fail(f"{rpc} {cid!r}: \"request\" must be an object, got {fields!r}")
    args = dict(fields)
    if "id" in req_cls.DESCRIPTOR.fields_by_name:
        if "id" in args:
            fail(f"{rpc} {cid!r}: give the id as the call's \"id\", not in \"request\"")
        args["id"] = cid
    try:
        return method, req_cls(**args)
    except (ValueError, TypeError) as e:
        fail(f"{rpc} {cid!r}: bad request fields {fields!r} for {req_cls.DESCRIPTOR.full_name}: {e}")


def error_dict(status_pb2, error_details_pb2, e):
    """The canonical form of a failed call: code name, message, decoded ErrorInfo."""
    out = {"code": e.code().name, "message": e.details(), "errorInfo": None, "detailsStatus": None}
    for md in e.trailing_metadata() or ():
        if md.key != STATUS_DETAILS_KEY:
            continue
        st = status_pb2.Status.FromString(md.value)
        out["detailsStatus"] = {"code": st.code, "message": st.message}
        for any_msg in st.details:
            if any_msg.type_url == ERROR_INFO_TYPE_URL:
                info = error_details_pb2.ErrorInfo()
                any_msg.Unpack(info)
                out["errorInfo"] = {
                    "reason": info.reason,
                    "domain": info.domain,
                    "metadata": dict(sorted(info.metadata.items())),
                }
                break
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", required=True, help="gRPC target, e.g. unix:///run/runc-shim/shim.sock")
    p.add_argument("--timeout", type=float, default=20.0, help="deadline of each call, seconds")
    args = p.parse_args()
    cases = json.load(sys.stdin)
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "rpc" in c for c in cases):
        fail('stdin must be a JSON list of {"rpc", "id", "request"} objects')

    out_dir = tempfile.mkdtemp(prefix="runc-shim-interop-")
    try:
        for note in generate_stubs(out_dir):
            print(f"interop.py: note: {note}", file=sys.stderr)
        shim_pb2, shim_pb2_grpc, status_pb2, error_details_pb2 = load_modules(out_dir)
        results = []
        with grpc.insecure_channel(args.target) as channel:
            stub = shim_pb2_grpc.ShimServiceStub(channel)
            # Every request is built before the first call, so a bad entry changes nothing on the server.
            requests = [(case["rpc"], case.get("id", ""), *build_request(shim_pb2, case["rpc"], case.get("id", ""), case.get("request", {})))
                        for case in cases]
            for rpc, cid, method, request in requests:
                entry = {"rpc": rpc, "id": cid}
                try:
                    r = getattr(stub, method.name)(request, timeout=args.timeout)
                    entry.update(ok=True, response=response_dict(shim_pb2, r))
                except grpc.RpcError as e:
                    entry.update(ok=False, **error_dict(status_pb2, error_details_pb2, e))
                results.append(entry)
        json.dump(results, sys.stdout, indent=1)
        sys.stdout.write("\n")
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
