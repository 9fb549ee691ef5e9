import { useState } from "react";
import { Link } from "react-router-dom";
import { apiResponse, type Lead } from "../api/client";
import { LeadForm, type LeadFields } from "../components/LeadForm";
import { useSession } from "../session";

export function NewLeadPage() {
  const { session } = useSession();
  const [result, setResult] = useState<{ lead: Lead; existing: boolean } | null>(null);
  async function submit(fields: LeadFields) {
    const body = Object.fromEntries(Object.entries(fields).filter(([, v]) => v));
    const { status, data } = await apiResponse<Lead>("/leads", { method: "POST", token: session?.accessToken, body });
    setResult({ lead: data, existing: status === 200 });
  }
  return (
    <section className="narrow">
      <h1>New lead</h1>
      {result && (
        <div role="status" className="notice">
          {result.existing ? "This person was already submitted by your company in the last 24 hours: " : "Lead submitted: "}
          <Link to={`/leads/${result.lead.id}`}>{result.lead.lastName}</Link>.
          {result.lead.channelConflict && " Another partner submitted this person recently; sales will settle it."}
        </div>
      )}
      <LeadForm submitLabel="Submit lead" onSubmit={submit} draftKey="soho-portal-lead-draft" />
    </section>
  );
}
