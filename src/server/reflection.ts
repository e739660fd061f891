import fs from "node:fs";
import { EventEmitter } from "node:events";
import { createRequire } from "node:module";
import { status as GrpcStatus, type Server, type ServerDuplexStream, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type * as ProtoLoader from "@grpc/proto-loader";
import type * as GrpcReflection from "@grpc/reflection";
import { BinaryReader } from "@bufbuild/protobuf/wire";

const LOADER_OPTIONS: ProtoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/**
 * The FileDescriptorSets `npm run gen` writes with `buf build`: the shim's
 * contract (with google/protobuf/timestamp.proto), grpc.health.v1, and the
 * richer error model's google/rpc/status.proto and google/rpc/error_details.proto
 * (with any.proto and duration.proto, from the google-proto-files package) —
 * no served service names them, but every error's `grpc-status-details-bin`
 * carries a google.rpc.Status with a google.rpc.ErrorInfo, which a reflection
 * client (grpcurl) can only decode if they are served. Read from `gen/`, which
 * sits at a different depth from `src/` and from `dist/src/`, so both paths are
 * tried. No `.proto` file is read at run time.
 */
export const DESCRIPTOR_SETS = ["descriptors.binpb", "health.binpb", "rpc.binpb"] as const;

function readDescriptorSet(name: string): Buffer {
  const candidates = [new URL(`../../gen/${name}`, import.meta.url), new URL(`../../../gen/${name}`, import.meta.url)];
  for (const url of candidates) {
    if (fs.existsSync(url)) return fs.readFileSync(url);
  }
  throw new Error(`descriptor set gen/${name} not found next to the program; run "npm run gen"`);
}

/** Splits a serialized FileDescriptorSet into its serialized FileDescriptorProtos (field 1). */
export function splitDescriptorSet(set: Uint8Array): Buffer[] {
  const reader = new BinaryReader(set);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no === 1) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType);
  }
  return files;
}

/**
 * A PackageDefinition whose file descriptors are buf's originals: real file
 * names, complete `dependency` lists and fully qualified type names. proto-loader
 * re-serialises descriptors without dependencies (grpc-node issues 2595, 3018),
 * which strict reflection clients such as grpcurl cannot link.
 */
export function reflectionPackageDefinition(sets: readonly Buffer[] = DESCRIPTOR_SETS.map(readDescriptorSet)): ProtoLoader.PackageDefinition {
  const protoLoader = requireCjs("@grpc/proto-loader") as typeof ProtoLoader;
  let merged: ProtoLoader.PackageDefinition = {};
  for (const set of sets) {
    const def = protoLoader.loadFileDescriptorSetFromBuffer(set, LOADER_OPTIONS);
    const originals = splitDescriptorSet(set);
    for (const entry of Object.values(def)) {
      if ("fileDescriptorProtos" in entry) entry.fileDescriptorProtos = originals;
    }
    merged = { ...merged, ...def };
  }
  return merged;
}

const requireCjs = createRequire(import.meta.url);

/** The reflection services served: both have one bidi-streaming method, `ServerReflectionInfo`. */
const REFLECTION_SERVICES = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"] as const;
const METHOD = "ServerReflectionInfo";

/** A method of @grpc/reflection's, as its own service definition has it. */
interface LoadedMethod {
  handler: (call: ReflectionCall) => void;
  deserialize: (bytes: Buffer) => unknown;
  serialize: (message: unknown) => Buffer;
}

/** What @grpc/reflection's handlers use of a call: `data` and `end` events, `write`, `end`. */
type ReflectionCall = EventEmitter & { write(message: unknown): boolean; end(): void };

const passThrough = (b: Buffer): Buffer => b;

/**
 * Serves `grpc.reflection.v1.ServerReflection` and
 * `grpc.reflection.v1alpha.ServerReflection` (@grpc/reflection), loaded on
 * the first reflection call: @grpc/reflection, the descriptors it builds and
 * its own copy of reflection.proto cost ~3 MiB of RSS (measured, idle server)
 * that a server no debugging tool asks is better without. The descriptor sets
 * are read here, at start-up (a missing one fails the start, as before), and
 * parsed on that first call, which takes ~0.1 s longer than the later ones.
 * The services are registered with grpc-js now, with pass-through
 * (de)serializers; each message goes through @grpc/reflection's own.
 */
export function addReflection(server: Server): void {
  const sets = DESCRIPTOR_SETS.map(readDescriptorSet);
  let loaded: Map<string, LoadedMethod> | undefined;
  const load = (): Map<string, LoadedMethod> => {
    if (loaded !== undefined) return loaded;
    const { ReflectionService } = requireCjs("@grpc/reflection") as typeof GrpcReflection;
    const methods = new Map<string, LoadedMethod>();
    const capture = {
      addService(def: ServiceDefinition, impl: UntypedServiceImplementation): void {
        for (const [name, m] of Object.entries(def)) {
          const handler = (impl[name] ?? (m.originalName === undefined ? undefined : impl[m.originalName])) as LoadedMethod["handler"] | undefined;
          if (handler !== undefined) methods.set(m.path, { handler, deserialize: m.requestDeserialize, serialize: m.responseSerialize });
        }
      },
    };
    new ReflectionService(reflectionPackageDefinition(sets)).addToServer(capture as unknown as Server);
    loaded = methods;
    return methods;
  };
  for (const service of REFLECTION_SERVICES) {
    const path = `/${service}/${METHOD}`;
    const definition: ServiceDefinition = {
      [METHOD]: {
        path, requestStream: true, responseStream: true,
        requestSerialize: passThrough, requestDeserialize: passThrough, responseSerialize: passThrough, responseDeserialize: passThrough,
      },
    };
    server.addService(definition, {
      [METHOD]: (call: ServerDuplexStream<Buffer, Buffer>) => {
        let method: LoadedMethod | undefined;
        try {
          method = load().get(path);
        } catch (e) {
          call.emit("error", { code: GrpcStatus.INTERNAL, details: `reflection: ${e instanceof Error ? e.message : String(e)}` });
          return;
        }
        if (method === undefined) {
          call.emit("error", { code: GrpcStatus.UNIMPLEMENTED, details: `reflection: ${path} not served` });
          return;
        }
        const m = method;
        const inner = Object.assign(new EventEmitter(), {
          write: (message: unknown): boolean => call.write(m.serialize(message)),
          end: (): void => void call.end(),
        });
        m.handler(inner);
        call.on("data", (bytes: Buffer) => {
          let message: unknown;
          try {
            message = m.deserialize(bytes);
          } catch (e) {
            call.emit("error", { code: GrpcStatus.INTERNAL, details: `Error deserializing request: ${e instanceof Error ? e.message : String(e)}` });
            return;
          }
          inner.emit("data", message);
        });
        call.on("end", () => inner.emit("end"));
      },
    });
  }
}
