/** A grpc-js client of grpc.health.v1.Health (the service definition grpc-health-check ships). */
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";

const HealthClient = grpc.makeGenericClientConstructor(healthService, "Health");

/** A minimal promise-based health client. */
export interface HealthClientHandle {
  /** Check(service): the status name, or rejects with the grpc-js error (e.g. NOT_FOUND). */
  check(service: string): Promise<string>;
  /** Watch(service): calls `onStatus` for every message; returns the call (cancel() to stop) and a promise of its end. */
  watch(service: string, onStatus: (s: string) => void): { call: grpc.ClientReadableStream<unknown>; ended: Promise<grpc.StatusObject | Error> };
  close(): void;
}

export function healthClient(socket: string): HealthClientHandle {
  const client = new HealthClient(`unix://${socket}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
  return {
    check: (service) =>
      new Promise((resolve, reject) =>
        client.check({ service }, (e: grpc.ServiceError | null, r: { status: string }) => (e ? reject(e) : resolve(r.status))),
      ),
    watch(service, onStatus) {
      const call = client.watch({ service }) as grpc.ClientReadableStream<{ status: string }>;
      call.on("data", (m: { status: string }) => onStatus(m.status));
      const ended = new Promise<grpc.StatusObject | Error>((resolve) => {
        call.on("status", resolve);
        call.on("error", resolve);
      });
      return { call, ended };
    },
    close: () => client.close(),
  };
}
