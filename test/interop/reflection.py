#!/usr/bin/python3
"""Strict gRPC reflection client for runc-shim (run by test/integration/interop.test.ts).

Does what grpcurl does, with nothing of the server's contract known in
advance: over grpc.reflection.v1 and grpc.reflection.v1alpha
ServerReflectionInfo it lists the services, asks for the file containing
runcshim.v1.ShimService (and grpc.health.v1.Health), follows every
`dependency` through file_by_filename, and links the files into a fresh
DescriptorPool in dependency order, failing when a dependency was not served.
Every method of runcshim.v1.ShimService is resolved from that pool (its
request and response message classes built, its streaming flags read from the
served FileDescriptorProto), as `grpcurl describe` does. With message classes
built from that pool (message_factory) it then calls State with a generic
unary call (a message built in code, and a JSON body parsed with json_format
as `grpcurl -d` does), Kill and Delete with JSON bodies (Kill of `--id`, a
container the Kill must not signal, and Delete of `--missing-id`, one that
does not exist), and grpc.health.v1.Health/Check.

Error details, as grpcurl prints them: it resolves google.rpc.Status and
google.rpc.ErrorInfo by file_containing_symbol (and their dependencies by
file_by_filename) into another fresh strict pool, makes a real failing call
(State of --missing-id), decodes the call's `grpc-status-details-bin` trailer
with the reflected google.rpc.Status, and each detail (a google.protobuf.Any)
with the message its type URL names, looked up through reflection again and
printed as proto3 JSON. Nothing of google.rpc is compiled in.

The reflection request/response classes themselves are built at run time from
the reflection protos that the npm package @grpc/reflection ships
(node_modules/@grpc/reflection/build/proto), compiled with grpc_tools.protoc
into a descriptor set in a temporary directory and loaded into a private pool.

Usage: /usr/bin/python3 test/interop/reflection.py --target unix:///path/shim.sock --id CONTAINER_ID \
           [--missing-id ID_THAT_DOES_NOT_EXIST]
       /usr/bin/python3 test/interop/reflection.py --target unix:///path/shim.sock --calls < calls.json

With --calls it reads a JSON array of grpcurl invocations from stdin —
{"list": true}, {"describe": SYMBOL} or {"method": "pkg.Service/Method",
"body": JSON} — and performs each as grpcurl would, from reflection alone:
`list` lists the services, `describe` resolves the symbol by
file_containing_symbol and links it strictly, a method call resolves its
service, parses the body with json_format (unknown fields rejected, as
grpcurl does) and prints the response as proto3 JSON (a server stream: the
messages up to the first SYNCED one, then the call is cancelled). Prints
{"calls": [...]} with one outcome per invocation.

Prints one JSON document on stdout (see the `report` keys in main()). Exit
codes: 0 done (the caller asserts on the report), 1 a strictness check failed
(message on stderr: a dependency not served, a file that does not link, ...),
2 bad usage or the reflection protos could not be compiled.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import grpc
import grpc_tools
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REFLECTION_PROTOS = os.path.join(REPO, "node_modules", "@grpc", "reflection", "build", "proto")
VERSIONS = ("v1", "v1alpha")
SHIM_SERVICE = "runcshim.v1.ShimService"
HEALTH_SERVICE = "grpc.health.v1.Health"
STATUS_MESSAGE = "google.rpc.Status"
ERROR_INFO_MESSAGE = "google.rpc.ErrorInfo"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


class StrictError(Exception):
    """A reflection answer a strict client cannot use."""


def message_class(pool, full_name):
    """The message class of `full_name` in `pool` (GetMessageClass on protobuf >= 4.22, MessageFactory before)."""
    desc = pool.FindMessageTypeByName(full_name)
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def reflection_classes(tmp):
    """Compiles @grpc/reflection's reflection.proto (v1 and v1alpha) to a descriptor set; returns {version: (Request, Response)}."""
    for version in VERSIONS:
        path = os.path.join(REFLECTION_PROTOS, "grpc", "reflection", version, "reflection.proto")
        if not os.path.isfile(path):
            print(f"reflection.py: {path} is missing: run npm ci", file=sys.stderr)
            sys.exit(2)
    out = os.path.join(tmp, "reflection.binpb")
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    r = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", REFLECTION_PROTOS, "-I", wkt, "--include_imports",
         "--descriptor_set_out=" + out] + [f"grpc/reflection/{v}/reflection.proto" for v in VERSIONS],
        capture_output=True, text=True)
    if r.returncode != 0:
        print(f"reflection.py: protoc failed for the reflection protos: {r.stderr.strip()}", file=sys.stderr)
        sys.exit(2)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in fds.file:
        pool.AddSerializedFile(file.SerializeToString())
    return {
        v: (message_class(pool, f"grpc.reflection.{v}.ServerReflectionRequest"),
            message_class(pool, f"grpc.reflection.{v}.ServerReflectionResponse"))
        for v in VERSIONS
    }


def reflection_classes_tmp():
    """reflection_classes() in a temporary directory removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="runc-shim-reflection-")
    try:
        return reflection_classes(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ReflectionClient:
    """One version of grpc.reflection.*.ServerReflection/ServerReflectionInfo, one request per stream."""

    def __init__(self, channel, version, classes, timeout):
        self.version = version
        self.request_class, self.response_class = classes
        self.timeout = timeout
        self.call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.response_class.FromString,
        )

    def ask(self, **field):
        """Sends one ServerReflectionRequest; returns the one response, raising StrictError on error_response."""
        responses = list(self.call(iter([self.request_class(host="", **field)]), timeout=self.timeout))
        if len(responses) != 1:
            raise StrictError(f"{self.version} {field}: expected 1 response, got {len(responses)}")
        resp = responses[0]
        if resp.WhichOneof("message_response") == "error_response":
            raise StrictError(f"{self.version} {field}: error_response {resp.error_response.error_code} "
                              f"{resp.error_response.error_message!r}")
        return resp

    def list_services(self):
        """Full names of the services the server lists."""
        return [s.name for s in self.ask(list_services="*").list_services_response.service]

    def files(self, **field):
        """The FileDescriptorProtos of a file_descriptor_response, in the order served."""
        resp = self.ask(**field)
        if resp.WhichOneof("message_response") != "file_descriptor_response":
            raise StrictError(f"{self.version} {field}: answered with {resp.WhichOneof('message_response')}")
        return [descriptor_pb2.FileDescriptorProto.FromString(b)
                for b in resp.file_descriptor_response.file_descriptor_proto]


def collect_files(client, symbols):
    """file_containing_symbol for each symbol, then file_by_filename for every dependency, transitively.

    Returns (files by name, the trail of requests made). Only what
    file_by_filename answered for a name counts as that file: a dependency the
    server does not serve by its name fails, even if it came along earlier.
    """
    by_name = {}
    trail = []
    queue = []
    for symbol in symbols:
        served = client.files(file_containing_symbol=symbol)
        if not served:
            raise StrictError(f"{client.version}: file_containing_symbol {symbol} returned no file")
        first = served[0]
        trail.append({"file_containing_symbol": symbol, "served": [f.name for f in served]})
        by_name.setdefault(first.name, first)
        queue.extend(first.dependency)
    while queue:
        name = queue.pop(0)
        if name in by_name:
            continue
        served = client.files(file_by_filename=name)
        trail.append({"file_by_filename": name, "served": [f.name for f in served]})
        match = [f for f in served if f.name == name]
        if not match:
            raise StrictError(f"{client.version}: file_by_filename {name!r} did not return that file "
                              f"(got {[f.name for f in served]})")
        by_name[name] = match[0]
        queue.extend(match[0].dependency)
    return by_name, trail


def strict_pool(files):
    """Adds the files to a fresh DescriptorPool in dependency order; StrictError when a dependency is missing or a file does not link."""
    pool = descriptor_pool.DescriptorPool()
    added = []
    pending = dict(files)
    while pending:
        ready = [n for n, f in sorted(pending.items()) if all(d in added for d in f.dependency)]
        if not ready:
            missing = sorted({d for f in pending.values() for d in f.dependency if d not in files})
            raise StrictError(f"cannot link {sorted(pending)}: missing dependencies {missing} (or a cycle)")
        for name in ready:
            try:
                pool.AddSerializedFile(pending.pop(name).SerializeToString())
            except Exception as e:  # TypeError from the C++ pool, others from the Python one
                raise StrictError(f"file {name} does not link: {e}") from e
            added.append(name)
    return pool, added


def negative_control(files, shim_file):
    """Shows the pool is strict: shim.proto without its dependencies must not link (the grpc-node#2595 symptom)."""
    pool = descriptor_pool.DescriptorPool()
    try:
        pool.AddSerializedFile(files[shim_file].SerializeToString())
        pool.FindMessageTypeByName("runcshim.v1.StateResponse").fields_by_name["created"].message_type.full_name
    except Exception as e:
        return {"rejected": True, "error": str(e).splitlines()[0]}
    return {"rejected": False, "error": None}


def describe_files(files, order):
    """name, package, syntax and dependency of each file, in link order."""
    return [{"name": n, "package": files[n].package, "syntax": files[n].syntax, "dependency": list(files[n].dependency)}
            for n in order]


def describe_methods(pool, files, shim_file):
    """Each ShimService method resolved from the strict pool: request/response types (classes built), request fields, streaming flags as served."""
    svc = pool.FindServiceByName(SHIM_SERVICE)
    served = {m.name: m for sp in files[shim_file].service if f"{files[shim_file].package}.{sp.name}" == SHIM_SERVICE
              for m in sp.method}
    out = {}
    for m in svc.methods:
        message_class(pool, m.input_type.full_name)
        message_class(pool, m.output_type.full_name)
        raw = served.get(m.name)
        if raw is None:
            raise StrictError(f"method {m.name} is in the pool but not in the served {shim_file}")
        out[m.name] = {
            "input": m.input_type.full_name,
            "output": m.output_type.full_name,
            "inputFields": {f.name: f.number for f in m.input_type.fields},
            "clientStreaming": raw.client_streaming,
            "serverStreaming": raw.server_streaming,
        }
    return out


def json_call(channel, pool, method_name, body, timeout):
    """A unary ShimService call from a JSON body, as `grpcurl -d BODY`: the answer as proto3 JSON, or the error's code and message."""
    svc = pool.FindServiceByName(SHIM_SERVICE)
    method = svc.methods_by_name[method_name]
    req_cls = message_class(pool, method.input_type.full_name)
    resp_cls = message_class(pool, method.output_type.full_name)
    raw = channel.unary_unary(f"/{svc.full_name}/{method.name}")
    try:
        reply = raw(json_format.Parse(json.dumps(body), req_cls()).SerializeToString(), timeout=timeout)
    except grpc.RpcError as e:
        return {"code": e.code().name, "message": e.details()}
    return {"response": to_json_with_defaults(resp_cls.FromString(reply))}


def to_json_with_defaults(msg):
    """proto3 JSON as a dict, fields at their default included ({"pid": 0}); the keyword changed in protobuf 5.26."""
    try:
        return json_format.MessageToDict(msg, including_default_value_fields=True)
    except TypeError:
        return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)


def error_details(channel, path, req_cls, missing_id, pool, client, timeout):
    """A real failing call, its grpc-status-details-bin decoded with reflected descriptors only.

    google.rpc.Status comes from `pool` (resolved by reflection); each detail's
    type is resolved through reflection from its type URL (as grpcurl does:
    file_containing_symbol of the name after the last '/'), linked strictly, and
    the detail printed as proto3 JSON.
    """
    call = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=lambda b: b)
    try:
        call(req_cls(id=missing_id), timeout=timeout)
    except grpc.RpcError as e:
        trailer = [v for k, v in (e.trailing_metadata() or ()) if k == STATUS_DETAILS_KEY]
        out = {"code": e.code().name, "message": e.details(), "trailers": len(trailer)}
        if not trailer:
            return out
        status = message_class(pool, STATUS_MESSAGE).FromString(trailer[0])
        out["status"] = {"code": status.code, "message": status.message}
        details = []
        for any_msg in status.details:
            symbol = any_msg.type_url.rsplit("/", 1)[-1]
            files, trail = collect_files(client, [symbol])
            detail_pool, _ = strict_pool(files)
            detail = message_class(detail_pool, symbol).FromString(any_msg.value)
            details.append({"typeUrl": any_msg.type_url, "resolvedFrom": trail[0]["served"][0],
                            "json": json_format.MessageToDict(detail)})
        out["details"] = details
        return out
    raise StrictError(f"State of {missing_id!r} succeeded; expected a failure with error details")


def grpcurl_calls(channel, client, calls, timeout):
    """Performs grpcurl-like invocations from reflection alone; one outcome dict per call."""
    out = []
    for c in calls:
        if c.get("list"):
            out.append({"list": True, "services": client.list_services()})
            continue
        if "describe" in c:
            files, _ = collect_files(client, [c["describe"]])
            pool, _ = strict_pool(files)
            try:
                kind, desc = "message", pool.FindMessageTypeByName(c["describe"])
            except KeyError:
                kind, desc = "service", pool.FindServiceByName(c["describe"])
            out.append({"describe": c["describe"], "kind": kind, "file": desc.file.name})
            continue
        service_name, method_name = c["method"].rsplit("/", 1)
        files, _ = collect_files(client, [service_name])
        pool, _ = strict_pool(files)
        method = pool.FindServiceByName(service_name).methods_by_name[method_name]
        req_cls = message_class(pool, method.input_type.full_name)
        resp_cls = message_class(pool, method.output_type.full_name)
        request = json_format.Parse(c["body"], req_cls())
        path = f"/{service_name}/{method_name}"
        outcome = {"method": c["method"]}
        try:
            if method.server_streaming:
                call = channel.unary_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                            response_deserializer=resp_cls.FromString)
                stream = call(request, timeout=timeout)
                messages = []
                for m in stream:
                    messages.append(json_format.MessageToDict(m))
                    if messages[-1].get("kind") == "WATCH_EVENT_KIND_SYNCED":
                        stream.cancel()
                        break
                outcome.update(ok=True, messages=messages)
            else:
                call = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                           response_deserializer=resp_cls.FromString)
                outcome.update(ok=True, response=json_format.MessageToDict(call(request, timeout=timeout)))
        except grpc.RpcError as e:
            outcome.update(ok=False, code=e.code().name, message=e.details())
        out.append(outcome)
    return out


def enum_name(msg, field):
    """The name of an enum field's value."""
    fd = msg.DESCRIPTOR.fields_by_name[field]
    value = getattr(msg, field)
    v = fd.enum_type.values_by_number.get(value)
    return v.name if v is not None else value


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", required=True, help="gRPC target, e.g. unix:///run/runc-shim/shim.sock")
    p.add_argument("--id", help="a container id to call State and Kill for (required without --calls)")
    p.add_argument("--calls", action="store_true", help="perform the grpcurl invocations read from stdin (JSON)")
    p.add_argument("--missing-id", default="rs-reflection-no-such",
                   help="a container id that does not exist, for the error-details call and Delete")
    p.add_argument("--timeout", type=float, default=20.0, help="deadline of each call, seconds")
    args = p.parse_args()
    if args.calls:
        calls = json.load(sys.stdin)
        try:
            classes = reflection_classes_tmp()
            with grpc.insecure_channel(args.target) as channel:
                client = ReflectionClient(channel, "v1", classes["v1"], args.timeout)
                json.dump({"calls": grpcurl_calls(channel, client, calls, args.timeout)}, sys.stdout, indent=1)
                sys.stdout.write("\n")
        except StrictError as e:
            print(f"reflection.py: strict reflection check failed: {e}", file=sys.stderr)
            sys.exit(1)
        return
    if args.id is None:
        p.error("--id is required without --calls")

    tmp = tempfile.mkdtemp(prefix="runc-shim-reflection-")
    try:
        classes = reflection_classes(tmp)
        report = {}
        with grpc.insecure_channel(args.target) as channel:
            per_version = {}
            pools = {}
            rpc_pools = {}
            clients = {}
            raw_files = {}
            for version in VERSIONS:
                client = ReflectionClient(channel, version, classes[version], args.timeout)
                services = client.list_services()
                files, trail = collect_files(client, [SHIM_SERVICE, HEALTH_SERVICE])
                pool, order = strict_pool(files)
                pools[version] = pool
                raw_files[version] = {n: f.SerializeToString(deterministic=True) for n, f in files.items()}
                shim_file = pool.FindServiceByName(SHIM_SERVICE).file.name
                # The richer error model's messages, which no served service names.
                rpc_files, rpc_trail = collect_files(client, [STATUS_MESSAGE, ERROR_INFO_MESSAGE])
                rpc_pool, rpc_order = strict_pool(rpc_files)
                rpc_pools[version] = rpc_pool
                clients[version] = client
                error_info = rpc_pool.FindMessageTypeByName(ERROR_INFO_MESSAGE)
                per_version[version] = {
                    "services": services,
                    "trail": trail,
                    "files": describe_files(files, order),
                    "shimFile": shim_file,
                    "negativeControl": negative_control(files, shim_file),
                    "methods": describe_methods(pool, files, shim_file),
                    "rpc": {
                        "trail": rpc_trail,
                        "files": describe_files(rpc_files, rpc_order),
                        "errorInfoFile": error_info.file.name,
                        "errorInfoFields": [f.name for f in error_info.fields],
                    },
                }
            report["reflection"] = per_version
            report["sameFilesInV1AndV1alpha"] = raw_files["v1"] == raw_files["v1alpha"]

            pool = pools["v1"]
            state_resp = pool.FindMessageTypeByName("runcshim.v1.StateResponse")
            created = state_resp.fields_by_name["created"]
            annotations = state_resp.fields_by_name["annotations"]
            report["descriptor"] = {
                "createdType": created.message_type.full_name if created.message_type else None,
                "createdTypeFile": created.message_type.file.name if created.message_type else None,
                "statusType": state_resp.fields_by_name["status"].enum_type.full_name,
                "annotationsIsMap": bool(annotations.message_type and annotations.message_type.GetOptions().map_entry),
            }

            # State, with classes from the pool and a generic unary call: the method path,
            # request and response types all come from the reflected ServiceDescriptor.
            svc = pool.FindServiceByName(SHIM_SERVICE)
            method = svc.methods_by_name["State"]
            path = f"/{svc.full_name}/{method.name}"
            req_cls = message_class(pool, method.input_type.full_name)
            resp_cls = message_class(pool, method.output_type.full_name)
            state = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=resp_cls.FromString)
            r = state(req_cls(id=args.id), timeout=args.timeout)
            report["state"] = {
                "method": path,
                "id": r.id, "pid": r.pid, "status": enum_name(r, "status"), "bundle": r.bundle, "rootfs": r.rootfs,
                "created": {"seconds": r.created.seconds, "nanos": r.created.nanos,
                            "type": r.created.DESCRIPTOR.full_name},
                "annotations": dict(sorted(r.annotations.items())), "owner": r.owner, "ociVersion": r.oci_version,
            }

            # The same call as `grpcurl -d '{"id": ...}'`: a JSON body parsed into the request,
            # bytes on the wire, the response printed as proto3 JSON.
            raw = channel.unary_unary(path)
            body = json.dumps({"id": args.id})
            reply = raw(json_format.Parse(body, req_cls()).SerializeToString(), timeout=args.timeout)
            report["stateJson"] = json.loads(json_format.MessageToJson(resp_cls.FromString(reply)))

            report["errorDetails"] = error_details(channel, path, req_cls, args.missing_id, rpc_pools["v1"],
                                                   clients["v1"], args.timeout)

            # Lifecycle calls from JSON bodies and the reflected request types: the field numbers of
            # `signal` and `force` must reach the server (a signal of 65 is refused before anything is
            # signalled; force turns a missing container's NOT_FOUND into OK).
            report["lifecycleJson"] = {
                "killSignal65": json_call(channel, pool, "Kill", {"id": args.id, "signal": 65}, args.timeout),
                "deleteMissing": json_call(channel, pool, "Delete", {"id": args.missing_id}, args.timeout),
                "deleteMissingForce": json_call(channel, pool, "Delete", {"id": args.missing_id, "force": True}, args.timeout),
            }

            # grpc.health.v1.Health/Check, also from the reflected descriptors.
            hsvc = pool.FindServiceByName(HEALTH_SERVICE)
            check = hsvc.methods_by_name["Check"]
            hreq = message_class(pool, check.input_type.full_name)
            hresp = message_class(pool, check.output_type.full_name)
            health_call = channel.unary_unary(f"/{hsvc.full_name}/{check.name}",
                                              request_serializer=lambda m: m.SerializeToString(),
                                              response_deserializer=hresp.FromString)
            health = {}
            for name in ("", SHIM_SERVICE, "no.such.Service"):
                try:
                    health[name] = {"status": enum_name(health_call(hreq(service=name), timeout=args.timeout), "status")}
                except grpc.RpcError as e:
                    health[name] = {"code": e.code().name, "message": e.details()}
            report["health"] = health
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    except StrictError as e:
        print(f"reflection.py: strict reflection check failed: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
