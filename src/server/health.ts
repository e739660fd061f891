import type { Server, UntypedServiceImplementation, handleUnaryCall } from "@grpc/grpc-js";
import { HealthImplementation, service as healthService } from "grpc-health-check";
import { SHIM_SERVICE_NAME } from "./names.js";

/** How often the health of the state root is re-checked for Watch streams, in ms. */
export const HEALTH_RECHECK_MS = 1000;

type ServingStatus = "SERVING" | "NOT_SERVING";

/**
 * `grpc.health.v1.Health` (grpc-health-check) for the service names `""` and
 * `runcshim.v1.ShimService`: SERVING while `isUsable()` holds (the state root),
 * NOT_SERVING otherwise, re-checked on each Check and every
 * {@link HEALTH_RECHECK_MS} for Watch; NOT_SERVING for good once
 * {@link ShimHealth.shutdown} is called. Unknown service names get NOT_FOUND.
 */
export class ShimHealth {
  private readonly impl = new HealthImplementation({ "": "SERVING", [SHIM_SERVICE_NAME]: "SERVING" });
  private shuttingDown = false;
  private published: ServingStatus = "SERVING";
  private timer: NodeJS.Timeout | undefined;

  /**
   * @param isUsable whether the served state root is usable now
   * @param onCheck told of each Check (the server's heap release counts it as activity)
   */
  constructor(
    private readonly isUsable: () => boolean,
    private readonly onCheck: () => void = () => {},
  ) {}

  /** Re-evaluates and publishes the status (to Watch streams when it changed). */
  refresh(): void {
    const next: ServingStatus = !this.shuttingDown && this.isUsable() ? "SERVING" : "NOT_SERVING";
    if (next === this.published) return;
    this.published = next;
    for (const name of ["", SHIM_SERVICE_NAME]) this.impl.setStatus(name, next);
  }


  /** Registers the service on `server`, with Check re-evaluating before it answers, and starts the periodic re-check. */
  addToServer(server: Pick<Server, "addService">): void {
    let handlers: UntypedServiceImplementation | undefined;
    this.impl.addToServer({ addService: (_def, impl) => (handlers = impl) } as Pick<Server, "addService"> as Server);
    if (handlers === undefined) throw new Error("grpc-health-check registered no handlers");
    const check = handlers.check as handleUnaryCall<unknown, unknown>;
    server.addService(healthService, {
      ...handlers,
      check: ((call, callback) => {
        this.onCheck();
        this.refresh();
        check(call, callback);
      }) as handleUnaryCall<unknown, unknown>,
    });
    this.timer = setInterval(() => this.refresh(), HEALTH_RECHECK_MS);
    this.timer.unref();
  }

  /** Marks both names NOT_SERVING for good (shutdown has begun) and stops the re-check timer. */
  shutdown(): void {
    this.shuttingDown = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.refresh();
  }
}
