import { describe, expect, it } from "vitest";
import type { Lead } from "../api/client";
import { weekly } from "./Dashboard";
import { passwordProblem } from "./Register";
import { safeNext } from "./Login";

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

describe("safeNext", () => {
  it("keeps the portal's own paths and sends anything else to the dashboard", () => {
    expect(safeNext("/leads?status=new#top")).toBe("/leads?status=new#top");
    expect(safeNext("/leads/3f2b")).toBe("/leads/3f2b");
    for (const hostile of ["//evil.example", "/\\evil.example", "https://evil.example/", "javascript:alert(1)", "evil", "/login?next=/x", "", null]) {
      expect(safeNext(hostile)).toBe("/");
    }
  });
});
