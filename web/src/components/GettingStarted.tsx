import { useState } from "react";
import { Link } from "react-router-dom";
import { useSession } from "../session";
import { useTeam } from "../team/names";

/** Where the checklist keeps what this browser did (sharing the form) and whether it was put away. */
const key = (user: string, what: string) => `soho-portal-getting-started-${what}-${user}`;

/** Marks the public form as shared (its link or embed code copied), for the checklist. */
export function markFormShared(user: string | undefined) {
  if (user) localStorage.setItem(key(user, "shared"), "1");
}

/** The steps a new partner takes first, each ticked when done; gone when all are, or when put away. */
export function gettingStartedSteps(input: { isAdmin: boolean; leads: number; team: number; shared: boolean }) {
  const steps = [{ id: "lead", label: "Submit your first lead", to: "/leads/new", done: input.leads > 0 }];
  if (input.isAdmin) {
    steps.push({ id: "team", label: "Invite your team", to: "/team", done: input.team > 0 });
    steps.push({ id: "form", label: "Share your public lead form", to: "/profile", done: input.shared });
  }
  return steps;
}

export function GettingStarted({ leads }: { leads: number }) {
  const { session } = useSession();
  const user = session?.user;
  const isAdmin = user?.role === "admin";
  const { accounts, loaded } = useTeam(session?.accessToken, user);
  const [hidden, setHidden] = useState(() => !!user && localStorage.getItem(key(user.id, "hidden")) === "1");
  if (!user || hidden || !loaded) return null;
  const shared = localStorage.getItem(key(user.id, "shared")) === "1";
  const steps = gettingStartedSteps({ isAdmin, leads, team: accounts.length, shared });
  if (steps.every((s) => s.done)) return null;
  return (
    <section className="getting-started" aria-labelledby="getting-started">
      <h2 id="getting-started">Getting started</h2>
      <ul>
        {steps.map((s) => (
          <li key={s.id} data-step={s.id} data-done={s.done}>
            <span aria-hidden="true">{s.done ? "✓" : "○"}</span> {s.done ? s.label : <Link to={s.to}>{s.label}</Link>}
            {s.done && <span className="visually-hidden"> (done)</span>}
          </li>
        ))}
      </ul>
      <button type="button" className="link" onClick={() => { localStorage.setItem(key(user.id, "hidden"), "1"); setHidden(true); }}>Hide this list</button>
    </section>
  );
}
