import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RuntimeError } from "../../src/runtime/errors.js";
import { MAX_ID_BYTES, idProblem, validateContainerId } from "../../src/runtime/id.js";

const kindOf = (id: string): string | undefined => {
  try {
    validateContainerId(id);
    return undefined;
  } catch (e) {
    return (e as RuntimeError).kind;
  }
};

describe("container id validation (runc 1.1.5 validateID, 255-byte limit)", () => {
  it.each(["a", "A", "0", "_", "+", ",", "-", ".a", "a.", "...", "a..", "a,b", "rs-1_2+3.4", "x".repeat(MAX_ID_BYTES)])(
    "accepts %j",
    (id) => expect(kindOf(id)).toBeUndefined(),
  );

  it.each(["", ".", "..", "a b", "a/b", "/a", "a/", "../x", "é", "a:b", "a\nb", "a\0b", "x".repeat(MAX_ID_BYTES + 1), "*", "a=b"])(
    "rejects %j with InvalidIdFormat",
    (id) => expect(kindOf(id)).toBe("InvalidIdFormat"),
  );

  it("says why: empty, too long, bad character, dot names", () => {
    expect(() => validateContainerId("")).toThrow("container id cannot be empty");
    expect(idProblem("x".repeat(256))).toMatch(/longer than 255 bytes/);
    expect(idProblem("a b")).toMatch(/only A-Z a-z 0-9/);
    expect(idProblem("..")).toMatch(/cannot be "\.\."/);
    expect(() => validateContainerId("a b")).toThrow(/^invalid container ID format/);
  });

  it("agrees with a direct model of the rule for any string", () => {
    const allowed = new Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+,-.");
    const model = (id: string): boolean =>
      Buffer.byteLength(id) >= 1 && Buffer.byteLength(id) <= 255 && [...id].every((c) => allowed.has(c)) && id !== "." && id !== "..";
    const idChars = fc.constantFrom(..."ab.,+-_/ é\0Z9".split(""));
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: idChars, maxLength: 8 }), fc.string({ unit: idChars, minLength: 250, maxLength: 260 })), (id) => {
        expect(kindOf(id) === undefined).toBe(model(id));
      }),
      { numRuns: 2000 },
    );
  });
});
