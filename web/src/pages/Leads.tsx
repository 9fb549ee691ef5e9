import { useCallback, useEffect, useMemo, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { api, apiText, download, leadQuery, STATUSES, type Lead, type LeadPage } from "../api/client";
import { ErrorNote, Loading } from "../components/Layout";
import { applyMessage } from "../live/messages";
import { useLiveUpdates } from "../live/useLiveUpdates";
import { useSession } from "../session";
import { dayRange } from "../text/dates";
import { submitterName, useTeam } from "../team/names";

type Filters = { status?: string; q?: string; submittedBy?: string; createdAfter?: string; createdBefore?: string; sort?: string };
const FILTERS = ["status", "q", "submittedBy", "createdAfter", "createdBefore", "sort"] as const;
/** The orders `GET /leads` offers (`sort`), as the table's headers say them. */
type Sort = "newest" | "oldest" | "name" | "status" | "updated";
const SORTS: Record<Sort, { label: string; words: string; aria: "ascending" | "descending" }> = {
  newest: { label: "Newest first", words: "by submission, newest first", aria: "descending" },
  oldest: { label: "Oldest first", words: "by submission, oldest first", aria: "ascending" },
  name: { label: "Name, A to Z", words: "by name, A to Z", aria: "ascending" },
  status: { label: "Status", words: "by status, along the pipeline", aria: "ascending" },
  updated: { label: "Last update", words: "by last update, latest first", aria: "descending" },
};

export function LeadsPage() {
  const { session } = useSession();
  const token = session?.accessToken;
  const isAdmin = session?.user.role === "admin";
  const { team, accounts } = useTeam(token, session?.user);
  // The filters live in the address (`/leads?status=new&q=ada`): a reload, the back button and
  // a shared link keep them.
  const [params, setParams] = useSearchParams();
  const search = params.toString();
  const filters = useMemo<Filters>(() => {
    const found = new URLSearchParams(search);
    return Object.fromEntries(FILTERS.flatMap((k) => (found.get(k) ? [[k, found.get(k) as string]] : [])));
  }, [search]);
  const [leads, setLeads] = useState<Lead[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [livePosition, setLivePosition] = useState<number | null>(null);
  const [changed, setChanged] = useState<Set<string>>(new Set());
  const [error, setError] = useState<unknown>(null);
  const query = (f: Filters) => ({ ...f, ...dayRange(f.createdAfter, f.createdBefore) });
  const load = useCallback(async (f: Filters, cursor?: string) => {
    try {
      const page = await api<LeadPage>(`/leads${leadQuery({ ...query(f), cursor })}`, { token });
      setLeads((current) => (cursor ? [...(current ?? []), ...page.items] : page.items));
      setNext(page.nextCursor ?? null);
      setLivePosition((known) => known ?? page.livePosition);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, [token]);
  useEffect(() => void load(filters), [load, filters]);
  useLiveUpdates(token, (message) => {
    // A new lead belongs on top of the newest-first list only: elsewhere a reload places it.
    if (message.type === "lead.created" && Object.values(filters).some(Boolean)) return;
    setLeads((current) => {
      const result = applyMessage(current ?? [], message);
      const id = result.changed;
      if (id) {
        setChanged((c) => new Set(c).add(id));
        setTimeout(() => setChanged((c) => { const n = new Set(c); n.delete(id); return n; }), 4000);
      }
      return result.leads;
    });
  }, livePosition);
  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setParams(Object.fromEntries([...form.entries()].map(([k, v]) => [k, String(v).trim()]).filter(([, v]) => v)));
  }
  const sort: Sort = (Object.keys(SORTS) as string[]).includes(filters.sort ?? "") ? (filters.sort as Sort) : "newest";
  function sortBy(order: Sort) {
    const next = new URLSearchParams(search);
    if (order === "newest") next.delete("sort");
    else next.set("sort", order);
    setParams(next);
  }
  async function exportCsv() {
    try {
      download("leads.csv", await apiText(`/leads/export.csv${leadQuery(query(filters))}`, token), "text/csv");
    } catch (e) {
      setError(e);
    }
  }
  return (
    <section>
      <h1>Leads</h1>
      <form key={search} className="filters" onSubmit={submit} aria-label="Filter leads">
        <label>Status
          <select name="status" defaultValue={filters.status ?? ""}>
            <option value="">Any</option>
            {STATUSES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </label>
        <label>Search<input name="q" type="search" placeholder="Name, email, company" defaultValue={filters.q ?? ""} /></label>
        {isAdmin && (
          <label>Submitted by
            <select name="submittedBy" defaultValue={filters.submittedBy ?? ""}>
              <option value="">Anyone</option>
              {session && <option value={session.user.id}>You</option>}
              {accounts.map((a) => <option key={a.id} value={a.id}>{team.names.get(a.id)}</option>)}
              <option value="public">Public form</option>
              {filters.submittedBy && filters.submittedBy !== "public" && filters.submittedBy !== session?.user.id && !team.names.has(filters.submittedBy) &&
                <option value={filters.submittedBy}>A team member</option>}
            </select>
          </label>
        )}
        <label>From<input name="createdAfter" type="date" defaultValue={filters.createdAfter ?? ""} /></label>
        <label>Until<input name="createdBefore" type="date" defaultValue={filters.createdBefore ?? ""} /></label>
        {/* Also set from the table's headers, which phone-width cards do not show. */}
        <label>Sort
          <select name="sort" defaultValue={sort === "newest" ? "" : sort}>
            {(Object.keys(SORTS) as Sort[]).map((order) => (
              <option key={order} value={order === "newest" ? "" : order}>{SORTS[order].label}</option>
            ))}
          </select>
        </label>
        <button>Apply</button>
        <button type="button" onClick={exportCsv}>Export CSV</button>
      </form>
      <ErrorNote error={error} />
      {leads === null ? <Loading /> : leads.length === 0 ? <p>No leads match.</p> : (
        <table>
          <caption className="visually-hidden">Leads, sorted {SORTS[sort].words}</caption>
          <thead><tr>
            <SortHeader label="Name" orders={["name"]} sort={sort} onSort={sortBy} />
            <th scope="col">Company</th>
            <SortHeader label="Status" orders={["status"]} sort={sort} onSort={sortBy} />
            <th scope="col">Soho CRM</th>
            {isAdmin && <th scope="col">Submitted by</th>}
            <SortHeader label="Submitted" orders={["newest", "oldest"]} sort={sort} onSort={sortBy} />
            <SortHeader label="Last update" orders={["updated"]} sort={sort} onSort={sortBy} />
          </tr></thead>
          <tbody>
            {leads.map((lead) => (
              <tr key={lead.id} data-lead={lead.id} className={changed.has(lead.id) ? "changed" : undefined}>
                {/* data-label: the column's name, shown beside each value where rows become cards (phones). */}
                <td data-label="Name"><Link to={`/leads/${lead.id}`}>{[lead.firstName, lead.lastName].filter(Boolean).join(" ")}</Link></td>
                <td data-label="Company">{lead.company}</td>
                <td data-label="Status"><span className={`status ${lead.status}`} data-testid="lead-status">{lead.status}</span>{changed.has(lead.id) && <span className="visually-hidden"> (just changed)</span>}</td>
                <td data-label="Soho CRM" data-testid="sync-state">{lead.syncState}</td>
                {isAdmin && <td data-label="Submitted by" data-testid="submitted-by">{submitterName(lead.submittedBy, team)}</td>}
                <td data-label="Submitted">{new Date(lead.createdAt).toLocaleString()}</td>
                <td data-label="Last update">{new Date(lead.updatedAt).toLocaleString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && <button type="button" onClick={() => load(filters, next)}>Load more</button>}
    </section>
  );
}

/** A column's header: a button that sorts the list by it. */
function SortHeader({ label, orders, sort, onSort }: { label: string; orders: Sort[]; sort: Sort; onSort: (order: Sort) => void }) {
  const active = orders.includes(sort);
  // A second click on the submission column turns it around; the others have one order.
  const target = active && orders.length > 1 ? orders[(orders.indexOf(sort) + 1) % orders.length] : orders[0];
  return (
    <th scope="col" aria-sort={active ? SORTS[sort].aria : undefined}>
      <button type="button" className="link" onClick={() => onSort(target)} aria-label={`${label}: sort ${SORTS[target].words}`}>
        {label}{active ? ` ${SORTS[sort].aria === "ascending" ? "↑" : "↓"}` : ""}
      </button>
    </th>
  );
}
