import { describe, expect, it } from "vitest";
import { dayRange } from "./dates";

describe("dayRange", () => {
  it("covers whole local days, Until included", () => {
    expect(dayRange("2026-12-05", "2026-12-05")).toEqual({
      createdAfter: new Date(2026, 11, 5).toISOString(),
      createdBefore: new Date(2026, 11, 6).toISOString(),
    });
    expect(dayRange("2026-12-31", undefined)).toEqual({ createdAfter: new Date(2026, 11, 31).toISOString(), createdBefore: undefined });
    expect(dayRange(undefined, "2026-12-31").createdBefore).toBe(new Date(2027, 0, 1).toISOString());
    expect(dayRange(undefined, undefined)).toEqual({ createdAfter: undefined, createdBefore: undefined });
  });

  it("refuses From after Until", () => {
    expect(() => dayRange("2026-12-06", "2026-12-05")).toThrow(/From/);
  });
});
