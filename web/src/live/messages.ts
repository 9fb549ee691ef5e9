// Live-update messages (CONTRACT.md 6) and how they change a list of leads.
import type { Lead } from "../api/client";

export type LiveMessage =
  | { type: "lead.created"; position: number; lead: Lead }
  | { type: "lead.status_changed"; position: number; leadId: string; oldStatus: string; newStatus: string; source: string; at: string }
  | { type: "lead.synced"; position: number; leadId: string; sohoLeadId: string }
  | { type: "lead.sync_failed"; position: number; leadId: string; syncError: string };

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
