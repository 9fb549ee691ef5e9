import { useEffect, useState, type ReactNode } from "react";
import { NavLink, useNavigate } from "react-router-dom";
import { ApiError } from "../api/client";
import { useSession } from "../session";

type DevInfo = { mailboxUrl: string; simulatorUrl: string | null };

export function Layout({ children }: { children: ReactNode }) {
  const { session, signOut } = useSession();
  const navigate = useNavigate();
  const [dev, setDev] = useState<DevInfo | null>(null);
  useEffect(() => {
    fetch("/dev/info", { headers: { accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then(setDev)
      .catch(() => setDev(null));
  }, []);
  const admin = session?.user.role === "admin";
  const auditor = session?.user.role === "auditor";
  return (
    <div className="app">
      <a className="skip" href="#main">Skip to content</a>
      <header>
        <span className="brand">Soho Partner Portal</span>
        {session && (
          <nav aria-label="Main">
            {auditor ? <NavLink to="/audit">Audit</NavLink> : (
              <>
                <NavLink to="/" end>Dashboard</NavLink>
                <NavLink to="/leads" end>Leads</NavLink>
                <NavLink to="/leads/new">New lead</NavLink>
                {admin && <NavLink to="/team">Team</NavLink>}
                <NavLink to="/profile">Profile</NavLink>
              </>
            )}
            <span className="who" data-testid="signed-in-as">{session.user.name || session.user.email}{auditor ? " (auditor)" : admin ? " (admin)" : ""}</span>
            <button type="button" className="link" onClick={() => { signOut(); navigate("/login"); }}>Log out</button>
          </nav>
        )}
      </header>
      {dev && (
        <aside className="dev" aria-label="Dev mode">
          Dev mode: <a href={dev.mailboxUrl}>dev mailbox</a>
          {dev.simulatorUrl && <> · <a href={dev.simulatorUrl}>Soho CRM simulator</a></>}
        </aside>
      )}
      <main id="main">{children}</main>
    </div>
  );
}

export function Loading() {
  return <p role="status">Loading…</p>;
}

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  return <p role="alert" className="error">{errorMessage(error)}</p>;
}

/** What went wrong, as one sentence. A refused field says what to do about it (its problem's
 *  own detail only says that a field was refused), named as people would name it. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) {
    const first = error.problem.errors?.[0];
    if (first) return sentence(/^(must|is|are) /.test(first.message) ? `${fieldName(first.field)} ${first.message}` : first.message);
    return sentence(error.message);
  }
  return error instanceof Error ? error.message : String(error);
}

function fieldName(field: string): string {
  const words = field.replace(/([A-Z])/g, " $1").toLowerCase().trim();
  return words === "q" ? "the search" : `the ${words}`;
}

function sentence(text: string): string {
  const trimmed = text.trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}
