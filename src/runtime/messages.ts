/**
 * runc 1.1.5's messages, defined once. Each is the text runc prints (after
 * `msg=`), so a client switching from runc sees the same words. Sources are
 * cited per entry; `../shared/reference/runc-lifecycle.md` §5 is the catalogue.
 */
export const MSG = {
  /** Start of a running container (`libcontainer/container_linux.go` Exec → ErrRunning text in 1.1.5 `start.go`). */
  alreadyRunning: "cannot start an already running container",
  /** Start of a stopped container (`start.go`). */
  startStopped: "cannot start a container that has stopped",
  /** Start whose init process died before its byte (a runc-shim wording, issue 3). */
  initDead: "container process is already dead",
  /** Start of a paused (or pausing) container (`start.go`). */
  startPaused: (status: string): string => `cannot start a container in the ${status} state`,
  /** Kill or Pause of a container that is not alive (`libcontainer/error.go` ErrNotRunning). */
  notRunning: "container not running",
  /** Resume of a container that is not paused (`libcontainer/error.go` ErrNotPaused). */
  notPaused: "container not paused",
  /** Delete without force of a live container (`delete.go`). */
  deleteNotStopped: (id: string, status: string): string => `cannot delete container ${id} that is not stopped: ${status}`,
  /** Delete whose SIGKILLed init outlived the wait (`delete.go` killContainer). */
  initStillRunning: "container init still running",
  /** Create of an id that exists (`libcontainer/factory_linux.go` Create). */
  exists: "container with given ID already exists",
  /** Load of an id without state.json (`libcontainer/factory_linux.go` Load). */
  notExists: "container does not exist",
  /** Pause/Resume of a container without a freezer path (`libcontainer/cgroups/fs/fs.go` Freeze). */
  noFreezer: "cannot toggle freezer: cgroups not configured for container",
  /** v1 freeze loop gave up (`libcontainer/cgroups/fs/freezer.go`). */
  unableToFreeze: "unable to freeze",
  /** Kill whose target pid vanished (`container_linux.go` Signal, Go's os.ErrProcessDone). */
  processFinished: "unable to signal init: os: process already finished",
} as const;
