import { useEffect, useState } from "react";
import { api, type Lead, type SubAccount } from "../api/client";

/** A partner's people by user id: the signed-in user and, for an admin, its sub-accounts. */
export type Team = { me: string | undefined; names: Map<string, string> };

/** Who submitted a lead, in words: "You", a team member's name (or email), "Public form". */
export function submitterName(submittedBy: Lead["submittedBy"], team: Team): string {
  if (submittedBy.type === "public") return "Public form";
  if (submittedBy.id && submittedBy.id === team.me) return "You";
  return (submittedBy.id && team.names.get(submittedBy.id)) || "A team member";
}

/** The name a sub-account goes by: its name, else its email. */
export function accountName(account: SubAccount): string {
  return account.name?.trim() || account.email;
}

/**
 * The signed-in user's team, for naming submitters: an admin's sub-accounts are fetched once
 * (a sub-account sees only its own leads, so it needs no names but its own).
 */
export function useTeam(token: string | undefined, user: { id: string; role: string; partnerId?: string | null } | undefined): { team: Team; accounts: SubAccount[]; loaded: boolean } {
  const partner = user?.role === "admin" ? user.partnerId : undefined;
  // `null` until fetched (an admin's); a sub-account has no team to fetch.
  const [accounts, setAccounts] = useState<SubAccount[] | null>(partner ? null : []);
  useEffect(() => {
    if (!partner || !token) return;
    // Names are a nicety: without them the list says "A team member".
    api<SubAccount[]>(`/partners/${partner}/sub-accounts`, { token }).then(setAccounts, () => setAccounts([]));
  }, [partner, token]);
  const known = accounts ?? [];
  return { team: { me: user?.id, names: new Map(known.map((a) => [a.id, accountName(a)])) }, accounts: known, loaded: accounts !== null };
}
