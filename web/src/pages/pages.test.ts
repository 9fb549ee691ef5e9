import { describe, expect, it } from "vitest";
import { passwordProblem } from "../text/passwords";
import { safeNext } from "./Login";
import { invitationState } from "./Team";
import { gettingStartedSteps } from "../components/GettingStarted";

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


describe("invitationState", () => {
  const account = { id: "a", email: "s@example.com", createdAt: "", leadCount: 0, status: "invited" };
  const now = new Date("2026-12-06T12:00:00Z");
  it("says until when an invitation works, or that it ran out", () => {
    expect(invitationState({ ...account, invitationExpiresAt: "2026-12-09T12:00:00Z" }, now)).toMatch(/^invited \(link works until /);
    expect(invitationState({ ...account, invitationExpiresAt: "2026-12-06T11:00:00Z" }, now)).toBe("invited (link expired: re-send it)");
    expect(invitationState({ ...account, status: "active", invitationExpiresAt: null }, now)).toBe("active");
  });
});


describe("gettingStartedSteps", () => {
  it("ticks what is done; a sub-account only submits leads", () => {
    const admin = gettingStartedSteps({ isAdmin: true, leads: 0, team: 2, shared: false });
    expect(admin.map((s) => [s.id, s.done])).toEqual([["lead", false], ["team", true], ["form", false]]);
    expect(gettingStartedSteps({ isAdmin: false, leads: 1, team: 0, shared: false }).map((s) => s.id)).toEqual(["lead"]);
  });
});
