// How the auditor's timeline tells each stored event: what happened, who caused it, and from where.
import type { AuditEvent } from "../../api/client";

type Meta = { actorType?: string; actorId?: string; webhookId?: string; correlationId?: string };

/** The event's own fields: the payload is `{"<type>": {...}}`. */
function body(event: AuditEvent): Record<string, unknown> {
  const payload = event.payload as Record<string, unknown> | null;
  const inner = payload?.[event.type];
  return inner && typeof inner === "object" ? (inner as Record<string, unknown>) : {};
}

export function summary(event: AuditEvent): string {
  const b = body(event);
  switch (event.type) {
    case "LeadSubmitted": {
      const details = (b.details ?? {}) as Record<string, unknown>;
      const name = [details.firstName, details.lastName].filter(Boolean).join(" ");
      return `Submitted: ${name}${b.channelConflict ? " (channel conflict: another partner had this person)" : ""}`;
    }
    case "LeadStatusChanged": {
      const change = (b.change ?? {}) as Record<string, unknown>;
      const note = change.note ? `: “${String(change.note)}”` : "";
      return `Status ${String(b.oldStatus)} → ${String(change.status)} (Soho CRM: ${String(change.crmStatus)})${note}`;
    }
    case "LeadStatusChangeSuperseded": {
      const change = (b.change ?? {}) as Record<string, unknown>;
      return `A change to ${String(change.status)} arrived after a newer one and was kept, not applied`;
    }
    case "LeadSyncedToCrm":
      return `Synced to Soho CRM as record ${String(b.sohoLeadId)}`;
    case "CrmSyncFailed":
      return `Soho CRM refused it: ${String(b.message ?? b.code)}`;
    default:
      return event.type;
  }
}

export function who(event: AuditEvent): string {
  const meta = (event.metadata ?? {}) as Meta;
  const actor = meta.actorType ? `${meta.actorType}${meta.actorId ? ` ${meta.actorId}` : ""}` : "unknown";
  return actor;
}

/** Where a status change came from (`portal` or `crm`), when the event says. */
export function source(event: AuditEvent): string | null {
  const s = ((body(event).change ?? {}) as Record<string, unknown>).source;
  return typeof s === "string" ? (s === "crm" ? "Soho CRM" : "the portal") : null;
}

export function webhookId(event: AuditEvent): string | null {
  return ((event.metadata ?? {}) as Meta).webhookId ?? null;
}

export function correlationId(event: AuditEvent): string | null {
  return ((event.metadata ?? {}) as Meta).correlationId ?? null;
}

/** A `datetime-local` value (the user's local time) as an RFC 3339 instant; null if unreadable. */
export function localToInstant(value: string): string | null {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** An instant as a `datetime-local` value in the user's local time, to the second. */
export function instantToLocal(instant: string): string {
  const date = new Date(instant);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}
