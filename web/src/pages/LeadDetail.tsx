import { Fragment, useCallback, useEffect, useState, type FormEvent } from "react";
import { Link, useParams } from "react-router-dom";
import { api, download, STATUSES, type HistoryEntry, type Lead, type Receipt } from "../api/client";
import { ErrorNote, Loading } from "../components/Layout";
import { useLiveUpdates } from "../live/useLiveUpdates";
import { useSession } from "../session";
import { useTeam } from "../team/names";

export function LeadDetailPage() {
  const { id } = useParams();
  const { session } = useSession();
  const token = session?.accessToken;
  const [lead, setLead] = useState<Lead | null>(null);
  const [history, setHistory] = useState<HistoryEntry[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [saving, setSaving] = useState(false);
  // Said after a change, until the next one: the form is reset, so this is the confirmation.
  const [changed, setChanged] = useState<string | null>(null);
  // The registration receipt (admins): proof of who registered the person first, for disputes.
  const [receipt, setReceipt] = useState<Receipt | null>(null);
  const admin = session?.user.role === "admin";
  const { team } = useTeam(token, session?.user);
  useEffect(() => {
    if (admin) api<Receipt>(`/leads/${id}/receipt`, { token }).then(setReceipt, () => setReceipt(null));
  }, [admin, id, token]);
  const load = useCallback(async () => {
    try {
      setLead(await api<Lead>(`/leads/${id}`, { token }));
      setHistory(await api<HistoryEntry[]>(`/leads/${id}/history`, { token }));
    } catch (e) {
      setError(e);
    }
  }, [id, token]);
  useEffect(() => void load(), [load]);
  useLiveUpdates(token, (message) => {
    const about = "leadId" in message ? message.leadId : message.lead?.id;
    if (about === id) void load();
  });
  async function change(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setSaving(true);
    setChanged(null);
    try {
      const updated = await api<Lead>(`/leads/${id}/status`, { method: "PATCH", token, body: { status: form.get("status"), note: form.get("note") || undefined } });
      setLead(updated);
      setHistory(await api<HistoryEntry[]>(`/leads/${id}/history`, { token }));
      setError(null);
      setChanged(`Status changed to ${updated.status}.`);
    } catch (e) {
      setError(e);
    } finally {
      setSaving(false);
    }
  }
  if (error && !lead) return <ErrorNote error={error} />;
  if (!lead) return <Loading />;
  /** A person, by name where the portal knows it. */
  const who = (id?: string | null) => (id === session?.user.id ? "you" : (id && team.names.get(id)) || "a member of your team");
  const submitter = lead.submittedBy.type === "public" ? "through your public form" : `by ${who(lead.submittedBy.id)}`;
  const changedBy = (h: HistoryEntry) =>
    h.source === "crm" ? "in Soho CRM" : h.actor.type === "user" ? `by ${who(h.actor.id)}` : h.actor.type === "api_key" ? "by your systems (an API key)" : "in the portal";
  return (
    <section>
      <p><Link to="/leads">← Leads</Link></p>
      <h1>{[lead.firstName, lead.lastName].filter(Boolean).join(" ")}</h1>
      <p data-testid="submitted">
        Submitted <time dateTime={lead.createdAt}>{new Date(lead.createdAt).toLocaleString()}</time>{" "}
        {submitter}
        {lead.updatedAt !== lead.createdAt && <>; last updated <time dateTime={lead.updatedAt}>{new Date(lead.updatedAt).toLocaleString()}</time></>}
      </p>
      <dl className="fields">
        <dt>Email</dt><dd>{lead.email ?? "—"}</dd>
        <dt>Phone</dt><dd>{lead.phone ?? "—"}</dd>
        <dt>Company</dt><dd>{lead.company ?? "—"}</dd>
        <dt>Notes</dt><dd>{lead.notes ?? "—"}</dd>
        <dt>Status</dt><dd><span className={`status ${lead.status}`} data-testid="lead-status">{lead.status}</span> (Soho CRM: {lead.crmStatus})</dd>
        <dt>Soho CRM sync</dt>
        <dd data-testid="sync-state">
          {lead.syncState === "synced" && <>synced (record {lead.sohoLeadId})</>}
          {lead.syncState === "pending" && <>pending: waiting to reach Soho CRM</>}
          {lead.syncState === "failed" && <>Soho CRM refused this lead: {lead.syncError}. It is not sent again as it is; your partner manager can tell you what the CRM needs.</>}
        </dd>
        {lead.channelConflict && <><dt>Note</dt><dd>Another partner submitted this person recently; sales will settle who it belongs to.</dd></>}
        {lead.metadata?.consent && <><dt>Consent</dt><dd data-testid="consent">Agreed on the public form: “{lead.metadata.consent}”</dd></>}
        {Object.entries(lead.metadata ?? {}).filter(([key]) => key !== "consent").map(([key, value]) => (
          <Fragment key={key}><dt>{key}</dt><dd>{value}</dd></Fragment>
        ))}
      </dl>
      {/* Keyed on the lead's last change: after one, the form starts afresh (the new status
          selected, the note empty). */}
      <form key={lead.updatedAt} onSubmit={change} className="inline" aria-label="Change the status">
        <label>New status
          <select name="status" defaultValue={lead.status}>
            {/* `converted` is the vendor's to set, in Soho CRM (it drives commission). */}
            {STATUSES.map((s) => <option key={s} value={s} disabled={s === "converted"}>{s}</option>)}
          </select>
        </label>
        <label>Note<input name="note" maxLength={2000} /></label>
        <button disabled={saving}>Change status</button>
      </form>
      {changed && <p role="status" className="notice" data-testid="status-changed">{changed}</p>}
      <ErrorNote error={error} />
      <h2>Status history</h2>
      <ol className="timeline" data-testid="history">
        <li>
          <time dateTime={lead.createdAt}>{new Date(lead.createdAt).toLocaleString()}</time>{" "}
          <strong>submitted</strong> {submitter}
        </li>
        {history.map((h, n) => (
          <li key={n}>
            <time dateTime={h.timestamp}>{new Date(h.timestamp).toLocaleString()}</time>{" "}
            {h.oldStatus} → <strong>{h.newStatus}</strong> ({h.crmStatus}) {changedBy(h)}{h.note ? `: “${h.note}”` : ""}
          </li>
        ))}
      </ol>
      {receipt && (
        <>
          <h2>Registration receipt</h2>
          <p>Proof that your company registered this person at this instant, checkable by an auditor against the portal's tamper-evident log. It carries no personal data.</p>
          <dl className="fields">
            <dt>Recorded</dt><dd><time dateTime={receipt.recordedAt}>{new Date(receipt.recordedAt).toLocaleString()}</time></dd>
            <dt>Event hash</dt><dd><code className="hash" data-testid="receipt-hash">{receipt.eventHash}</code></dd>
          </dl>
          <button type="button" onClick={() => download(`receipt-${receipt.leadId}.json`, JSON.stringify(receipt, null, 2), "application/json")}>Download receipt</button>
        </>
      )}
    </section>
  );
}
