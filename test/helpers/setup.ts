/**
 * Runs in every test file (vitest `setupFiles`): after the file's own hooks,
 * the temporary socket dirs it made are removed (vitest's workers may end
 * without the process "exit" event the helper also listens for).
 */
import { afterAll } from "vitest";
import { removeTempDirs } from "./server.js";

afterAll(() => removeTempDirs());
