import { useEffect, useState, type FormEvent } from "react";
import { Link, useParams } from "react-router-dom";
import { api, apiText, download, type AuditEvent, type Lead, type Receipt, type ReceiptCheck } from "../../api/client";
import { ErrorNote, Loading } from "../../components/Layout";
import { useSession } from "../../session";
import { correlationId, instantToLocal, localToInstant, source, summary, webhookId, who } from "./events";

/** A lead's stored events, oldest first, with who caused each and its hashes; the lead as it was
 *  at any event or any instant; its export and its registration receipt. Read-only. */
export function AuditLeadPage() {
  const { id } = useParams();
  const { session } = useSession();
  const token = session?.accessToken;
  const [events, setEvents] = useState<AuditEvent[] | null>(null);
  const [at, setAt] = useState<string | null>(null);
  const [state, setState] = useState<Lead | null | undefined>(undefined);
  const [receipt, setReceipt] = useState<Receipt | null>(null);
  const [check, setCheck] = useState<ReceiptCheck | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    api<AuditEvent[]>(`/audit/leads/${id}/events`, { token }).then((list) => {
      setEvents(list);
      setAt(list[list.length - 1]?.recordedAt ?? null);
    }, setError);
    api<Receipt>(`/leads/${id}/receipt`, { token }).then(setReceipt, () => setReceipt(null));
  }, [id, token]);
  useEffect(() => {
    if (!at) return;
    api<Lead>(`/audit/leads/${id}/state?at=${encodeURIComponent(at)}`, { token })
      .then(setState, (e) => (e?.status === 404 ? setState(null) : setError(e)));
  }, [at, id, token]);
  if (error && !events) return <ErrorNote error={error} />;
  if (!events) return <Loading />;
  const selected = events.findIndex((e) => e.recordedAt === at);
  const step = (by: number) => setAt(events[Math.min(Math.max(selected + by, 0), events.length - 1)].recordedAt);
  function pick(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const instant = localToInstant(String(new FormData(event.currentTarget).get("at") ?? ""));
    if (instant) setAt(instant);
  }
  async function exportLead() {
    try {
      download(`lead-${id}.jsonl`, await apiText(`/audit/leads/${id}/export`, token), "application/jsonl");
    } catch (e) {
      setError(e);
    }
  }
  async function checkReceipt() {
    if (!receipt) return;
    try {
      setCheck(await api<ReceiptCheck>("/audit/receipts/check", { method: "POST", token, body: receipt }));
    } catch (e) {
      setError(e);
    }
  }
  return (
    <section>
      <p><Link to="/audit">← Audit</Link></p>
      <h1>Lead <code>{id}</code></h1>
      <div className="actions">
        <button type="button" onClick={exportLead}>Download export (JSON lines)</button>
        {receipt && <button type="button" onClick={checkReceipt}>Check its receipt against the log</button>}
      </div>
      {check && <p role="status" data-testid="receipt-check" className={check.ok ? "notice" : "error"}>{check.ok ? "The receipt holds: the registration is in the log as issued." : `The receipt does not hold: ${check.reason}`}</p>}
      <ErrorNote error={error} />
      <h2>The lead at an instant</h2>
      <div className="inline">
        <button type="button" onClick={() => step(-1)} disabled={selected <= 0}>Previous event</button>
        <button type="button" onClick={() => step(1)} disabled={selected === events.length - 1}>Next event</button>
        <form onSubmit={pick} className="inline" aria-label="Show the lead at an instant">
          <label>Instant<input type="datetime-local" step="1" name="at" key={at ?? ""} defaultValue={at ? instantToLocal(at) : ""} /></label>
          <button>Show</button>
        </form>
      </div>
      <div aria-live="polite" data-testid="state-at">
        {at && <p>As of <time dateTime={at}>{new Date(at).toLocaleString()}</time>:</p>}
        {state === null && <p>The lead did not exist yet.</p>}
        {state && (
          <dl className="fields">
            <dt>Status</dt><dd><span className={`status ${state.status}`} data-testid="state-status">{state.status}</span> (Soho CRM: {state.crmStatus})</dd>
            <dt>Name</dt><dd>{[state.firstName, state.lastName].filter(Boolean).join(" ")}</dd>
            <dt>Email</dt><dd>{state.email ?? "—"}</dd>
            <dt>Phone</dt><dd>{state.phone ?? "—"}</dd>
            <dt>Soho CRM</dt><dd>{state.syncState}{state.sohoLeadId ? ` (record ${state.sohoLeadId})` : ""}</dd>
            <dt>Partner</dt><dd><Link to={`/audit/partners/${state.partnerId}`}>{state.partnerId}</Link></dd>
          </dl>
        )}
      </div>
      <h2>Events</h2>
      <ol className="timeline audit" data-testid="timeline">
        {events.map((event, n) => (
          <li key={event.position} aria-current={n === selected ? "step" : undefined}>
            <button type="button" className="link" onClick={() => setAt(event.recordedAt)}>
              <time dateTime={event.recordedAt}>{new Date(event.recordedAt).toLocaleString()}</time>
            </button>{" "}
            <strong>{summary(event)}</strong>
            <dl className="fields small">
              <dt>Type</dt><dd>{event.type} (#{event.sequence}, position {event.position})</dd>
              <dt>By</dt><dd>{who(event)}</dd>
              {source(event) && <><dt>Source</dt><dd>{source(event)}</dd></>}
              {webhookId(event) && <><dt>Webhook</dt><dd><code>{webhookId(event)}</code></dd></>}
              {correlationId(event) && <><dt>Correlation</dt><dd><code>{correlationId(event)}</code></dd></>}
              <dt>Hash</dt><dd><code className="hash">{event.hash}</code></dd>
            </dl>
          </li>
        ))}
      </ol>
      {receipt && (
        <>
          <h2>Registration receipt</h2>
          <dl className="fields">
            <dt>Recorded</dt><dd><time dateTime={receipt.recordedAt}>{new Date(receipt.recordedAt).toLocaleString()}</time></dd>
            <dt>Person key hash</dt><dd><code className="hash">{receipt.personKeyHash}</code></dd>
            <dt>Event hash</dt><dd><code className="hash">{receipt.eventHash}</code></dd>
          </dl>
        </>
      )}
    </section>
  );
}
