import fs from "node:fs";
import { ReflectionService } from "@grpc/reflection";
import type { Server } from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { BinaryReader } from "@bufbuild/protobuf/wire";

const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

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
export function reflectionPackageDefinition(): protoLoader.PackageDefinition {
  let merged: protoLoader.PackageDefinition = {};
  for (const name of DESCRIPTOR_SETS) {
    const set = readDescriptorSet(name);
    const def = protoLoader.loadFileDescriptorSetFromBuffer(set, LOADER_OPTIONS);
    const originals = splitDescriptorSet(set);
    for (const entry of Object.values(def)) {
      if ("fileDescriptorProtos" in entry) entry.fileDescriptorProtos = originals;
    }
    merged = { ...merged, ...def };
  }
  return merged;
}

/** Serves `grpc.reflection.v1.ServerReflection` and `grpc.reflection.v1alpha.ServerReflection` (@grpc/reflection). */
export function addReflection(server: Server): void {
  new ReflectionService(reflectionPackageDefinition()).addToServer(server);
}
