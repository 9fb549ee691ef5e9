// Live-update messages (CONTRACT.md 6) and how they change a list of leads.
import type { Lead } from "../api/client";
import type { webhooks } from "../api/schema";

/** A message's body as `/openapi.json` describes it (the webhooks partners receive carry the
 *  same shapes): generated, never written by hand. */
type Body<K extends keyof webhooks> = NonNullable<webhooks[K]["post"]>["requestBody"]["content"]["application/json"];

/** What the live socket and `/leads/changes` send: each message with its feed position. */
export type LiveMessage = (Body<"lead.created"> | Body<"lead.status_changed"> | Body<"lead.synced"> | Body<"lead.sync_failed">) & { position: number };

/** The list after a message, and the lead it changed (for a visible cue). */
export function applyMessage(leads: Lead[], message: LiveMessage): { leads: Lead[]; changed?: string } {
  switch (message.type) {
    case "lead.created":
      if (!message.lead || leads.some((l) => l.id === message.lead.id)) return { leads };
      return { leads: [message.lead, ...leads], changed: message.lead.id };
    case "lead.status_changed": {
      if (!leads.some((l) => l.id === message.leadId)) return { leads };
      const next = leads.map((l) => (l.id === message.leadId ? { ...l, status: message.newStatus, updatedAt: message.at } : l));
      return { leads: next, changed: message.leadId };
    }
    case "lead.synced": {
      if (!leads.some((l) => l.id === message.leadId)) return { leads };
      const next = leads.map((l) => (l.id === message.leadId ? { ...l, sohoLeadId: message.sohoLeadId, syncState: "synced" } : l));
      return { leads: next, changed: message.leadId };
    }
    case "lead.sync_failed": {
      if (!leads.some((l) => l.id === message.leadId)) return { leads };
      const next = leads.map((l) => (l.id === message.leadId ? { ...l, syncState: "failed", syncError: message.syncError } : l));
      return { leads: next, changed: message.leadId };
    }
    default:
      return { leads };
  }
}
