import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../../api/client";
import { instantToLocal, localToInstant, source, summary, webhookId, who } from "./events";

const event = (type: string, inner: object, metadata: object = {}): AuditEvent => ({
  type, payload: { [type]: inner }, metadata, position: 1, sequence: 1, version: "1",
  recordedAt: "2026-12-06T10:00:00Z", hash: "a".repeat(64), prevHash: "0".repeat(64),
});

describe("the auditor's timeline", () => {
  it("tells a status change, its source and its webhook", () => {
    const changed = event("LeadStatusChanged", { oldStatus: "new", change: { status: "converted", crmStatus: "Converted", source: "crm" } },
      { actorType: "crm", webhookId: "msg_1" });
    expect(summary(changed)).toBe("Status new → converted (Soho CRM: Converted)");
    expect(source(changed)).toBe("Soho CRM");
    expect(webhookId(changed)).toBe("msg_1");
    expect(who(changed)).toBe("crm");
  });
  it("tells a submission with its conflict", () => {
    const submitted = event("LeadSubmitted", { details: { firstName: "Ada", lastName: "Lovelace" }, channelConflict: true },
      { actorType: "user", actorId: "u1" });
    expect(summary(submitted)).toContain("Ada Lovelace");
    expect(summary(submitted)).toContain("channel conflict");
    expect(who(submitted)).toBe("user u1");
    expect(source(submitted)).toBeNull();
  });
  it("round-trips a local time to an instant and back", () => {
    const local = instantToLocal("2026-12-06T10:11:12Z");
    expect(localToInstant(local)).toBe("2026-12-06T10:11:12.000Z");
    expect(localToInstant("not a time")).toBeNull();
  });
});
