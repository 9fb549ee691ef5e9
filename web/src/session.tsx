// The logged-in session: kept in sessionStorage (per tab), dropped on expiry or a 401, after
// which the user logs in again and comes back to where they were.
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { setUnauthorisedHandler, type Session } from "./api/client";

type Stored = { session: Session; expiresAt: number };
type SessionContext = {
  session: Session | null;
  signIn: (session: Session) => void;
  signOut: (expired?: boolean) => void;
};

const KEY = "soho-portal-session";
const Context = createContext<SessionContext | null>(null);

function load(): Session | null {
  try {
    const stored = JSON.parse(sessionStorage.getItem(KEY) ?? "null") as Stored | null;
    return stored && stored.expiresAt > Date.now() ? stored.session : null;
  } catch {
    return null;
  }
}

export function SessionProvider({ children }: { children: ReactNode }) {
  const [session, setSession] = useState<Session | null>(load);
  const signIn = useCallback((s: Session) => {
    sessionStorage.setItem(KEY, JSON.stringify({ session: s, expiresAt: Date.now() + s.expiresIn * 1000 }));
    setSession(s);
  }, []);
  const signOut = useCallback((expired = false) => {
    sessionStorage.removeItem(KEY);
    setSession(null);
    if (expired) {
      const here = window.location.pathname + window.location.search;
      window.history.pushState({}, "", `/login?expired=1&next=${encodeURIComponent(here)}`);
      window.dispatchEvent(new PopStateEvent("popstate"));
    }
  }, []);
  useEffect(() => setUnauthorisedHandler(() => signOut(true)), [signOut]);
  useEffect(() => {
    if (!session) return;
    const stored = JSON.parse(sessionStorage.getItem(KEY) ?? "null") as Stored | null;
    const left = (stored?.expiresAt ?? 0) - Date.now();
    const timer = setTimeout(() => signOut(true), Math.max(left, 0));
    return () => clearTimeout(timer);
  }, [session, signOut]);
  const value = useMemo(() => ({ session, signIn, signOut }), [session, signIn, signOut]);
  return <Context.Provider value={value}>{children}</Context.Provider>;
}

export function useSession(): SessionContext {
  const context = useContext(Context);
  if (!context) throw new Error("useSession outside SessionProvider");
  return context;
}
