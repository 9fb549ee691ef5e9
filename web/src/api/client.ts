// The API client, typed by the OpenAPI document the server publishes (schema.ts is generated
// from web/openapi.json, which a server test checks against /openapi.json).
import type { components } from "./schema";

export type Lead = components["schemas"]["LeadView"];
export type LeadPage = components["schemas"]["LeadPage"];
export type Session = components["schemas"]["Session"];
export type DashboardStats = components["schemas"]["DashboardStats"];
export type HistoryEntry = components["schemas"]["StatusHistoryEntry"];
export type SubAccount = components["schemas"]["SubAccount"];
export type PartnerProfile = components["schemas"]["PartnerProfile"];
export type Problem = components["schemas"]["Problem"];
export type FieldError = components["schemas"]["FieldError"];
export type LeadRequest = components["schemas"]["LeadRequest"];
export type WeekFigures = components["schemas"]["WeekFigures"];
export type ApiKey = components["schemas"]["ApiKey"];
export type CreatedKey = components["schemas"]["CreatedKey"];
export type WebhookEndpoint = components["schemas"]["Endpoint"];
export type WebhookDelivery = components["schemas"]["Delivery"];
export type AuditEvent = components["schemas"]["AuditEvent"];
export type FoundLead = components["schemas"]["FoundLead"];
export type AuditedPartner = components["schemas"]["AuditedPartner"];
export type Verdict = components["schemas"]["Verdict"];
export type Receipt = components["schemas"]["Receipt"];
export type ReceiptCheck = components["schemas"]["ReceiptCheck"];

export const STATUSES = ["new", "contacted", "qualified", "converted", "lost"] as const;
export type Status = (typeof STATUSES)[number];

/** A problem+json answer, with its fields by name. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public problem: Problem,
  ) {
    super(problem.detail || problem.title);
  }

  fieldErrors(): Record<string, string> {
    return Object.fromEntries((this.problem.errors ?? []).map((e) => [e.field, e.message]));
  }
}

type Options = { method?: string; body?: unknown; token?: string | null };

/** Called when a session has truly ended (its refresh credential refused too). */
let onUnauthorised: () => void = () => {};
export function setUnauthorisedHandler(handler: () => void) {
  onUnauthorised = handler;
}

/** Called with each session a refresh brings. */
let onRefreshed: (session: Session) => void = () => {};
export function setRefreshedHandler(handler: (session: Session) => void) {
  onRefreshed = handler;
}

let refreshing: Promise<Session | null> | null = null;

/** Trades the refresh cookie (HttpOnly: this script never sees it) for a new session. One
 *  refresh at a time is shared by every caller. For a session that was live (`again`), a
 *  refusal is tried once more a moment later: another tab may just have rotated the cookie
 *  both tabs share. */
export function refreshSession(again = true): Promise<Session | null> {
  const once = async (): Promise<Session | null> => {
    try {
      const response = await fetch("/auth/refresh", { method: "POST", headers: { accept: "application/json" }, credentials: "same-origin" });
      return response.ok ? ((await response.json()) as Session) : null;
    } catch {
      return null;
    }
  };
  refreshing ??= (async () => {
    const first = await once();
    const session = first ?? (again ? await new Promise((r) => setTimeout(r, 500)).then(once) : null);
    if (session) onRefreshed(session);
    return session;
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

export async function api<T>(path: string, options: Options = {}): Promise<T> {
  return (await apiResponse<T>(path, options)).data;
}

/** Like `api`, with the answer's status (201 created vs 200 existing, say). An access token
 *  that ran out is refreshed and the request sent again, once. */
export async function apiResponse<T>(path: string, options: Options = {}, retried = false): Promise<{ status: number; data: T }> {
  const { method = "GET", body, token } = options;
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401 && token) {
    const fresh = retried ? null : await refreshSession();
    if (fresh) return apiResponse<T>(path, { ...options, token: fresh.accessToken }, true);
    onUnauthorised();
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const problem: Problem = data ?? { type: "about:blank", title: response.statusText, status: response.status, detail: response.statusText };
    throw new ApiError(response.status, problem);
  }
  return { status: response.status, data: data as T };
}

/** The query string of the leads filters, without empty values. */
export function leadQuery(filters: Record<string, string | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) if (value) params.set(key, value);
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** A text answer (an export), for a logged-in caller; refreshes a token that ran out, once. */
export async function apiText(path: string, token?: string | null): Promise<string> {
  const send = (bearer?: string | null) => fetch(path, { headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });
  let response = await send(token);
  if (response.status === 401 && token) {
    const fresh = await refreshSession();
    if (!fresh) onUnauthorised();
    else response = await send(fresh.accessToken);
  }
  if (!response.ok) {
    const problem = (await response.json().catch(() => null)) as Problem | null;
    throw new ApiError(response.status, problem ?? { type: "about:blank", title: response.statusText, status: response.status, detail: response.statusText });
  }
  return response.text();
}

/** Hands `text` to the browser as a file download. */
export function download(name: string, text: string, type: string) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
