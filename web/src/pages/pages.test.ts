import { describe, expect, it } from "vitest";
import { passwordProblem } from "./Register";
import { safeNext } from "./Login";

describe("passwordProblem", () => {
  it("counts characters as people do", () => {
    expect(passwordProblem("short")).toMatch(/12/);
    expect(passwordProblem("é".repeat(12))).toBeNull();
    expect(passwordProblem("x".repeat(257))).toMatch(/256/);
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
