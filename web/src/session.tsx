// The logged-in session: the access token kept in sessionStorage (per tab) and refreshed a
// minute before it runs out, or when an answer says it has, with the refresh cookie the server
// keeps HttpOnly. Only when that is refused too has the session ended: the user is told so,
// logs in again and comes back to where they were (drafts are kept: see LeadForm).
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { refreshSession, setRefreshedHandler, setUnauthorisedHandler, type Session } from "./api/client";

type Stored = { session: Session; expiresAt: number };
type SessionContext = {
  session: Session | null;
  /** The last session ended on its own (not by logging out): the login page says so. */
  ended: boolean;
  signIn: (session: Session) => void;
  signOut: (expired?: boolean) => void;
};

const KEY = "soho-portal-session";
/** Refresh this long before the access token runs out. */
const AHEAD_MS = 60_000;
const Context = createContext<SessionContext | null>(null);

function load(): Stored | null {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) ?? "null") as Stored | null;
  } catch {
    return null;
  }
}

export function SessionProvider({ children }: { children: ReactNode }) {
  const [session, setSession] = useState<Session | null>(() => load()?.session ?? null);
  const [ended, setEnded] = useState(false);
  // A new tab has no access token yet, but may have a live refresh cookie: ask before showing
  // the login page.
  // (Not for the public form, which anyone opens, often framed by another site.)
  const [ready, setReady] = useState(session !== null || window.location.pathname.startsWith("/public-form"));
  const signIn = useCallback((s: Session) => {
    sessionStorage.setItem(KEY, JSON.stringify({ session: s, expiresAt: Date.now() + s.expiresIn * 1000 }));
    setSession(s);
    setEnded(false);
  }, []);
  const signOut = useCallback((expired = false) => {
    sessionStorage.removeItem(KEY);
    // The page that needed the session sends the user to log in (RequireSession), saying why.
    setSession(null);
    setEnded(expired);
    if (!expired) {
      // Logging out ends the refresh credential too (the server clears its cookie).
      void fetch("/auth/logout", { method: "POST", credentials: "same-origin" }).catch(() => {});
    }
  }, []);
  useEffect(() => setUnauthorisedHandler(() => signOut(true)), [signOut]);
  useEffect(() => setRefreshedHandler(signIn), [signIn]);
  useEffect(() => {
    if (ready) return;
    void refreshSession(false).finally(() => setReady(true));
  }, [ready]);
  useEffect(() => {
    if (!session) return;
    const left = (load()?.expiresAt ?? 0) - Date.now() - AHEAD_MS;
    const timer = setTimeout(() => {
      void refreshSession().then((fresh) => fresh ?? signOut(true));
    }, Math.max(left, 0));
    return () => clearTimeout(timer);
  }, [session, signOut]);
  const value = useMemo(() => ({ session, ended, signIn, signOut }), [session, ended, signIn, signOut]);
  if (!ready) return <p role="status">Loading…</p>;
  return <Context.Provider value={value}>{children}</Context.Provider>;
}

export function useSession(): SessionContext {
  const context = useContext(Context);
  if (!context) throw new Error("useSession outside SessionProvider");
  return context;
}
