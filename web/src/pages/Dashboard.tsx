import { useCallback, useEffect, useState } from "react";
import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { api, STATUSES, type DashboardStats, type WeekFigures } from "../api/client";
import { ErrorNote, Loading } from "../components/Layout";
import { GettingStarted } from "../components/GettingStarted";
import { useLiveUpdates } from "../live/useLiveUpdates";
import { useSession } from "../session";

export function DashboardPage() {
  const { session } = useSession();
  const token = session?.accessToken;
  const [stats, setStats] = useState<DashboardStats | null>(null);
  // Counted by the server for every lead (GET /dashboard/weekly), not from a page of them.
  const [weeks, setWeeks] = useState<WeekFigures[]>([]);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(async () => {
    try {
      const [figures, series] = await Promise.all([
        api<DashboardStats>("/dashboard/stats", { token }),
        api<WeekFigures[]>("/dashboard/weekly?weeks=12", { token }),
      ]);
      setStats(figures);
      setWeeks(series);
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
      <GettingStarted leads={stats.totalLeads} />
      <div className="cards" aria-live="polite">
        <div className="card"><span>Total leads</span><strong data-testid="total-leads">{stats.totalLeads}</strong></div>
        <div className="card"><span>Conversion rate</span><strong data-testid="conversion-rate">{(stats.conversionRate * 100).toFixed(1)} %</strong></div>
        {STATUSES.map((status) => (
          <div className="card" key={status}><span>{status}</span><strong data-testid={`status-${status}`}>{stats.byStatus[status] ?? 0}</strong></div>
        ))}
      </div>
      <h2>Leads by week (last 12 weeks)</h2>
      {stats.totalLeads === 0 ? (
        <p>No leads yet. Submit your first one from “New lead”.</p>
      ) : (
        <figure aria-label="Leads submitted and converted per week">
          <ResponsiveContainer width="100%" height={260}>
            <BarChart data={weeks}>
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
