import { describe, expect, it } from "vitest";
import type { Lead } from "../api/client";
import { weekly } from "./Dashboard";
import { passwordProblem } from "./Register";

describe("passwordProblem", () => {
  it("counts characters as people do", () => {
    expect(passwordProblem("short")).toMatch(/12/);
    expect(passwordProblem("é".repeat(12))).toBeNull();
    expect(passwordProblem("x".repeat(257))).toMatch(/256/);
  });
});

describe("weekly", () => {
  it("buckets leads by the Monday of their week, with conversions", () => {
    const at = (createdAt: string, status = "new") => ({ createdAt, status }) as Lead;
    expect(weekly([at("2026-11-24T10:00:00Z"), at("2026-11-29T23:00:00Z", "converted"), at("2026-11-17T08:00:00Z")])).toEqual([
      { week: "2026-11-16", submitted: 1, converted: 0 },
      { week: "2026-11-23", submitted: 2, converted: 1 },
    ]);
  });
});
