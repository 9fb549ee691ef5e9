import { useEffect, useState, type FormEvent } from "react";
import { Link, useParams, useSearchParams } from "react-router-dom";
import { api, STATUSES, type AuditedPartner, type DashboardStats } from "../../api/client";
import { ErrorNote, Loading } from "../../components/Layout";
import { useSession } from "../../session";
import { instantToLocal, localToInstant } from "./events";

/** A partner's dashboard figures as they stood at any instant, rebuilt from the log. The instant
 *  lives in the address (`?at=`), so a view can be reloaded and shared. */
export function AuditPartnerPage() {
  const { id } = useParams();
  const { session } = useSession();
  const token = session?.accessToken;
  const [params, setParams] = useSearchParams();
  // "Now" is fixed when the page opens: a fresh instant each render would remount the picker.
  const [openedAt] = useState(() => new Date().toISOString());
  const at = params.get("at") ?? openedAt;
  const [partner, setPartner] = useState<AuditedPartner | null>(null);
  const [stats, setStats] = useState<DashboardStats | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    api<AuditedPartner[]>("/audit/partners", { token }).then((all) => setPartner(all.find((p) => p.id === id) ?? null), setError);
  }, [id, token]);
  useEffect(() => {
    api<DashboardStats>(`/audit/partners/${id}/stats?at=${encodeURIComponent(at)}`, { token }).then((s) => { setStats(s); setError(null); }, setError);
  }, [at, id, token]);
  function pick(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const instant = localToInstant(String(new FormData(event.currentTarget).get("at") ?? ""));
    if (instant) setParams({ at: instant });
  }
  return (
    <section>
      <p><Link to="/audit">← Audit</Link></p>
      <h1>{partner?.name ?? "Partner"}</h1>
      <p><Link to={`/audit?partnerId=${id}`}>Its newest leads</Link></p>
      <form onSubmit={pick} className="inline" aria-label="Figures at an instant">
        <label>Figures as they stood at<input type="datetime-local" step="1" name="at" key={at} defaultValue={instantToLocal(at)} /></label>
        <button>Show</button>
      </form>
      <ErrorNote error={error} />
      {!stats ? <Loading /> : (
        <div className="cards" aria-live="polite">
          <div className="card"><span>Total leads</span><strong data-testid="total-leads">{stats.totalLeads}</strong></div>
          <div className="card"><span>Conversion rate</span><strong>{(stats.conversionRate * 100).toFixed(1)} %</strong></div>
          {STATUSES.map((status) => (
            <div className="card" key={status}><span>{status}</span><strong data-testid={`status-${status}`}>{stats.byStatus[status] ?? 0}</strong></div>
          ))}
        </div>
      )}
    </section>
  );
}
