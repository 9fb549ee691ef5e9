// Profile → Webhooks: the endpoints a partner's systems are told of lead changes at (contract
// 8). The secret is shown once, when an endpoint is registered; each endpoint has a test button
// and its deliveries, with every attempt and its answer.
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, type WebhookDelivery, type WebhookEndpoint } from "../api/client";
import { ErrorNote } from "./Layout";

const EVENTS = ["lead.created", "lead.status_changed", "lead.synced", "lead.sync_failed"] as const;

export function Webhooks({ partnerId, token }: { partnerId: string; token?: string }) {
  const path = `/partners/${partnerId}/webhooks`;
  const [endpoints, setEndpoints] = useState<WebhookEndpoint[] | null>(null);
  const [secret, setSecret] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const [deliveries, setDeliveries] = useState<WebhookDelivery[]>([]);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(() => api<WebhookEndpoint[]>(path, { token }).then(setEndpoints, setError), [path, token]);
  useEffect(() => void load(), [load]);
  const show = useCallback(async (id: string) => {
    setOpen(id);
    try {
      setDeliveries(await api<WebhookDelivery[]>(`${path}/${id}/deliveries`, { token }));
    } catch (e) {
      setError(e);
    }
  }, [path, token]);
  async function create(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    const events = EVENTS.filter((e) => data.get(e));
    try {
      const created = await api<WebhookEndpoint>(path, { method: "POST", token, body: { url: String(data.get("url") ?? ""), events } });
      setSecret(created.secret ?? null);
      form.reset();
      setError(null);
      await load();
    } catch (e) {
      setError(e);
    }
  }
  async function act(id: string, method: string, suffix = "", body?: unknown) {
    try {
      await api(`${path}/${id}${suffix}`, { method, token, body });
      await load();
      if (open === id) await show(id);
    } catch (e) {
      setError(e);
    }
  }
  return (
    <>
      <h2>Webhooks</h2>
      <p>Your systems can be told of lead changes: each delivery is signed with Standard Webhooks using the endpoint’s secret.</p>
      {secret && (
        <div role="status" className="notice">
          <p>The endpoint’s signing secret. Copy it now: it is not shown again.</p>
          <label>Secret<input readOnly value={secret} onFocus={(e) => e.currentTarget.select()} /></label>
        </div>
      )}
      <form onSubmit={create} aria-label="Register a webhook endpoint">
        <label>URL<input name="url" type="url" required placeholder="https://crm.example.com/hooks/soho" /></label>
        <fieldset>
          <legend>Events</legend>
          {EVENTS.map((e) => <label key={e} className="check"><input type="checkbox" name={e} defaultChecked={e !== "lead.synced"} /> {e}</label>)}
        </fieldset>
        <button>Register endpoint</button>
      </form>
      <ErrorNote error={error} />
      {endpoints?.map((endpoint) => (
        <section key={endpoint.id} className="endpoint" aria-label={`Endpoint ${endpoint.url}`}>
          <p><code>{endpoint.url}</code> · {endpoint.events.join(", ")} · {endpoint.enabled ? "enabled" : `disabled${endpoint.disabledReason ? ` (${endpoint.disabledReason})` : ""}`}</p>
          <button type="button" onClick={() => void act(endpoint.id, "POST", "/test", {})}>Send test event</button>{" "}
          <button type="button" onClick={() => void show(endpoint.id)}>Deliveries</button>{" "}
          <button type="button" onClick={() => void act(endpoint.id, "PATCH", "", { enabled: !endpoint.enabled })}>{endpoint.enabled ? "Disable" : "Enable"}</button>{" "}
          <button type="button" className="danger" onClick={() => window.confirm(`Delete the endpoint ${endpoint.url}?`) && void act(endpoint.id, "DELETE")}>Delete</button>
          {open === endpoint.id && (
            deliveries.length === 0 ? <p>No deliveries yet.</p> : (
              <table>
                <caption className="visually-hidden">Deliveries to {endpoint.url}, newest first</caption>
                <thead><tr><th scope="col">Event</th><th scope="col">State</th><th scope="col">Attempts</th><th scope="col">Created</th></tr></thead>
                <tbody>
                  {deliveries.map((d) => (
                    <tr key={d.id} data-delivery={d.messageId}>
                      <td>{d.type}</td>
                      <td data-testid="delivery-state">{d.state}</td>
                      <td>{(d.attempts as { status?: number; error?: string }[]).map((a) => a.status ?? a.error).join(", ")}</td>
                      <td>{new Date(d.createdAt).toLocaleString()}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )
          )}
        </section>
      ))}
    </>
  );
}
