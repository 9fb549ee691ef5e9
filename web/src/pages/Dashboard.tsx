import { useCallback, useEffect, useState } from "react";
import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { api, STATUSES, type DashboardStats, type Lead, type LeadPage } from "../api/client";
import { ErrorNote, Loading } from "../components/Layout";
import { useLiveUpdates } from "../live/useLiveUpdates";
import { useSession } from "../session";

/** Leads submitted and converted, by the week they were submitted (Monday, UTC). */
export function weekly(leads: Lead[]): { week: string; submitted: number; converted: number }[] {
  const weeks = new Map<string, { submitted: number; converted: number }>();
  for (const lead of leads) {
    const day = new Date(lead.createdAt);
    const monday = new Date(Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate() - ((day.getUTCDay() + 6) % 7)));
    const key = monday.toISOString().slice(0, 10);
    const entry = weeks.get(key) ?? { submitted: 0, converted: 0 };
    entry.submitted += 1;
    if (lead.status === "converted") entry.converted += 1;
    weeks.set(key, entry);
  }
  return [...weeks.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([week, v]) => ({ week, ...v }));
}

export function DashboardPage() {
  const { session } = useSession();
  const token = session?.accessToken;
  const [stats, setStats] = useState<DashboardStats | null>(null);
  const [leads, setLeads] = useState<Lead[]>([]);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(async () => {
    try {
      setStats(await api<DashboardStats>("/dashboard/stats", { token }));
      const page = await api<LeadPage>("/leads?limit=200", { token });
      setLeads(page.items);
    } catch (e) {
      setError(e);
    }
  }, [token]);
  useEffect(() => void load(), [load]);
  useLiveUpdates(token, () => void load());
  if (error) return <ErrorNote error={error} />;
  if (!stats) return <Loading />;
  return (
    <section>
      <h1>Dashboard</h1>
      <p>{stats.scope === "partner" ? "Your company's leads" : "The leads you submitted"}</p>
      <div className="cards" aria-live="polite">
        <div className="card"><span>Total leads</span><strong data-testid="total-leads">{stats.totalLeads}</strong></div>
        <div className="card"><span>Conversion rate</span><strong data-testid="conversion-rate">{(stats.conversionRate * 100).toFixed(1)} %</strong></div>
        {STATUSES.map((status) => (
          <div className="card" key={status}><span>{status}</span><strong data-testid={`status-${status}`}>{stats.byStatus[status] ?? 0}</strong></div>
        ))}
      </div>
      <h2>Leads by week</h2>
      {leads.length === 0 ? (
        <p>No leads yet. Submit your first one from “New lead”.</p>
      ) : (
        <figure aria-label="Leads submitted and converted per week">
          <ResponsiveContainer width="100%" height={260}>
            <BarChart data={weekly(leads)}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="week" />
              <YAxis allowDecimals={false} />
              <Tooltip />
              <Legend />
              <Bar dataKey="submitted" name="Submitted" fill="#1f5fbf" isAnimationActive={false} />
              <Bar dataKey="converted" name="Converted" fill="#1a7f37" isAnimationActive={false} />
            </BarChart>
          </ResponsiveContainer>
        </figure>
      )}
    </section>
  );
}
