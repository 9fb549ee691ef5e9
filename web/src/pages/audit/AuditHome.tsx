import { useEffect, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { api, type AuditedPartner, type FoundLead, type Verdict } from "../../api/client";
import { ErrorNote } from "../../components/Layout";
import { useSession } from "../../session";

/** The auditor's start: find a lead (by id, Soho CRM id or partner), pick a partner, and check
 *  the whole log against its hash chain. The search lives in the address, so it survives a reload. */
export function AuditHomePage() {
  const { session } = useSession();
  const token = session?.accessToken;
  const [params, setParams] = useSearchParams();
  const [partners, setPartners] = useState<AuditedPartner[]>([]);
  const [found, setFound] = useState<FoundLead[] | null>(null);
  const [verdict, setVerdict] = useState<Verdict | null>(null);
  const [verifying, setVerifying] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const search = params.toString();
  useEffect(() => {
    api<AuditedPartner[]>("/audit/partners", { token }).then(setPartners, setError);
  }, [token]);
  useEffect(() => {
    if (!search) return setFound(null);
    api<FoundLead[]>(`/audit/leads?${search}`, { token }).then((leads) => { setFound(leads); setError(null); }, setError);
  }, [search, token]);
  function find(field: "id" | "sohoLeadId" | "partnerId") {
    return (event: FormEvent<HTMLFormElement>) => {
      event.preventDefault();
      const value = String(new FormData(event.currentTarget).get(field) ?? "").trim();
      if (value) setParams({ [field]: value });
    };
  }
  async function verify() {
    setVerifying(true);
    try {
      setVerdict(await api<Verdict>("/audit/verify", { token }));
    } catch (e) {
      setError(e);
    } finally {
      setVerifying(false);
    }
  }
  const partnerName = (id: string) => partners.find((p) => p.id === id)?.name ?? id;
  return (
    <section>
      <h1>Audit</h1>
      <div className="search-forms">
        <form onSubmit={find("id")} aria-label="Find a lead by its id">
          <label>Lead id<input name="id" defaultValue={params.get("id") ?? ""} placeholder="0193…" /></label>
          <button>Find</button>
        </form>
        <form onSubmit={find("sohoLeadId")} aria-label="Find a lead by its Soho CRM id">
          <label>Soho CRM record id<input name="sohoLeadId" defaultValue={params.get("sohoLeadId") ?? ""} /></label>
          <button>Find</button>
        </form>
        <form onSubmit={find("partnerId")} aria-label="List a partner's leads">
          <label>Partner
            <select name="partnerId" defaultValue={params.get("partnerId") ?? ""}>
              <option value="">Choose a partner</option>
              {partners.map((p) => <option key={p.id} value={p.id}>{p.name} ({p.sohoPartnerId})</option>)}
            </select>
          </label>
          <button>Show newest leads</button>
        </form>
      </div>
      <ErrorNote error={error} />
      {found && (
        found.length === 0 ? <p role="status">No lead matches.</p> : (
          <table aria-label="Leads found">
            <thead><tr><th>Lead</th><th>Partner</th><th>Status</th><th>Soho CRM id</th><th>Recorded</th></tr></thead>
            <tbody>
              {found.map((lead) => (
                <tr key={lead.id}>
                  <td><Link to={`/audit/leads/${lead.id}`}>{lead.lastName}</Link> <code>{lead.id}</code></td>
                  <td><Link to={`/audit/partners/${lead.partnerId}`}>{lead.partnerName || partnerName(lead.partnerId)}</Link></td>
                  <td><span className={`status ${lead.status}`}>{lead.status}</span></td>
                  <td>{lead.sohoLeadId ?? "—"}</td>
                  <td><time dateTime={lead.createdAt}>{new Date(lead.createdAt).toLocaleString()}</time></td>
                </tr>
              ))}
            </tbody>
          </table>
        )
      )}
      <h2>Partners</h2>
      <ul>
        {partners.map((p) => <li key={p.id}><Link to={`/audit/partners/${p.id}`}>{p.name}</Link> ({p.status})</li>)}
      </ul>
      <h2>The log's integrity</h2>
      <p>Recomputes every event's hash, in commit order, and compares it with the chain sealed when it was recorded.</p>
      <button type="button" onClick={verify} disabled={verifying}>{verifying ? "Verifying…" : "Verify the whole log"}</button>
      {verdict && (
        <div role="status" data-testid="verdict" className={verdict.ok ? "notice" : "error"}>
          {verdict.ok
            ? <>Intact: {verdict.events} events verified{verdict.unsealed ? ` (${verdict.unsealed} newer ones not sealed yet)` : ""}. Head <code>{verdict.head}</code></>
            : <>Broken at position {verdict.firstBroken?.position}: {verdict.firstBroken?.reason}. {verdict.events} events verified before it.</>}
        </div>
      )}
    </section>
  );
}
