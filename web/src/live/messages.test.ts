import { describe, expect, it } from "vitest";
import type { Lead } from "../api/client";
import { applyMessage } from "./messages";

const lead = (id: string, status = "new"): Lead =>
  ({ id, status, lastName: id, syncState: "pending", sohoLeadId: null, createdAt: "2026-11-24T12:00:00Z", updatedAt: "2026-11-24T12:00:00Z" }) as unknown as Lead;

describe("applyMessage", () => {
  it("changes a row's status in place and names it", () => {
    const { leads, changed } = applyMessage([lead("a"), lead("b")], {
      type: "lead.status_changed", position: 3, leadId: "b", oldStatus: "new", newStatus: "contacted", source: "crm", at: "2026-11-24T12:05:00Z",
    });
    expect(leads.map((l) => l.status)).toEqual(["new", "contacted"]);
    expect(changed).toBe("b");
  });
  it("marks a row synced", () => {
    const { leads } = applyMessage([lead("a")], { type: "lead.synced", position: 4, leadId: "a", sohoLeadId: "42" });
    expect(leads[0]).toMatchObject({ syncState: "synced", sohoLeadId: "42" });
  });
  it("puts a new lead first, once", () => {
    const once = applyMessage([lead("a")], { type: "lead.created", position: 5, lead: lead("c") });
    expect(once.leads.map((l) => l.id)).toEqual(["c", "a"]);
    const twice = applyMessage(once.leads, { type: "lead.created", position: 5, lead: lead("c") });
    expect(twice.leads).toHaveLength(2);
  });
  it("ignores leads that are not on the page", () => {
    const before = [lead("a")];
    const { leads, changed } = applyMessage(before, { type: "lead.synced", position: 6, leadId: "zz", sohoLeadId: "1" });
    expect(leads).toBe(before);
    expect(changed).toBeUndefined();
  });
});
