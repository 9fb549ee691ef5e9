// The lead form of the portal and of the public form: the contract's rules checked before
// sending, and the server's problem+json shown field by field.
import { useState, type FormEvent } from "react";
import { ApiError } from "../api/client";

export type LeadFields = { firstName?: string; lastName?: string; email?: string; phone?: string; company?: string; notes?: string; consent?: string };

export function validateLead(fields: LeadFields): Record<string, string> {
  const errors: Record<string, string> = {};
  const len = (v?: string) => [...(v ?? "").trim()].length;
  if (!len(fields.lastName)) errors.lastName = "Last name is required.";
  if (len(fields.lastName) > 100) errors.lastName = "At most 100 characters.";
  if (len(fields.firstName) > 100) errors.firstName = "At most 100 characters.";
  if (!len(fields.email) && !len(fields.phone)) errors.email = "An email or a phone is required.";
  if (len(fields.email) && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(fields.email!.trim())) errors.email = "Enter an email such as name@example.com.";
  if (len(fields.phone) && !/^[0-9 +().-]{6,50}$/.test(fields.phone!.trim())) errors.phone = "Enter a phone number such as +44 20 7946 0000.";
  if (len(fields.company) > 200) errors.company = "At most 200 characters.";
  if (len(fields.notes) > 2000) errors.notes = "At most 2,000 characters.";
  return errors;
}

const LABELS: [keyof LeadFields, string, string][] = [
  ["firstName", "First name", "given-name"],
  ["lastName", "Last name", "family-name"],
  ["email", "Email", "email"],
  ["phone", "Phone", "tel"],
  ["company", "Company", "organization"],
];

/** The fields typed so far, kept per tab under `key` (a session that ends must not lose them). */
function loadDraft(key?: string): LeadFields | null {
  if (!key) return null;
  try {
    return JSON.parse(sessionStorage.getItem(key) ?? "null") as LeadFields | null;
  } catch {
    return null;
  }
}

function saveDraft(key: string | undefined, form: HTMLFormElement) {
  if (!key) return;
  const fields = Object.fromEntries([...new FormData(form).entries()].filter(([k, v]) => k !== "website" && String(v).trim()).map(([k, v]) => [k, String(v)]));
  if (Object.keys(fields).length) sessionStorage.setItem(key, JSON.stringify(fields));
  else sessionStorage.removeItem(key);
}

/**
 * `consent`, when given, is a sentence the person must agree to before sending (a public form
 * whose partner asks for it): a required checkbox, sent as `consent: "on"`.
 */
export function LeadForm({ onSubmit, submitLabel, honeypot, draftKey, consent }: { onSubmit: (fields: LeadFields & { website?: string }) => Promise<void>; submitLabel: string; honeypot?: boolean; draftKey?: string; consent?: string }) {
  const [draft] = useState(() => loadDraft(draftKey));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const fields = Object.fromEntries([...new FormData(form).entries()].map(([k, v]) => [k, String(v)])) as LeadFields & { website?: string };
    const found = validateLead(fields);
    if (consent && !fields.consent) found.consent = "Tick the box to agree to be contacted, then send.";
    setErrors(found);
    setProblem(null);
    if (Object.keys(found).length) return;
    setBusy(true);
    try {
      await onSubmit(fields);
      form.reset();
      if (draftKey) sessionStorage.removeItem(draftKey);
    } catch (e) {
      if (e instanceof ApiError && e.status === 422) setErrors(e.fieldErrors());
      else if (e instanceof ApiError && e.status === 429) setProblem("Too many submissions from here. Wait a minute and try again.");
      else setProblem(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }
  return (
    <form onSubmit={submit} onInput={(e) => saveDraft(draftKey, e.currentTarget)} noValidate>
      {draft && <p role="status">What you were typing before is back.</p>}
      {LABELS.map(([name, label, autoComplete]) => (
        <div key={name}>
          <label>{label}{name === "lastName" && " (required)"}
            <input name={name} autoComplete={autoComplete} defaultValue={draft?.[name] ?? ""} aria-invalid={!!errors[name]} aria-describedby={errors[name] ? `${name}-error` : undefined} />
          </label>
          {errors[name] && <p id={`${name}-error`} role="alert" className="error">{errors[name]}</p>}
        </div>
      ))}
      <label>Notes<textarea name="notes" rows={3} defaultValue={draft?.notes ?? ""} aria-invalid={!!errors.notes} /></label>
      {errors.notes && <p role="alert" className="error">{errors.notes}</p>}
      {consent && (
        <div>
          <label className="check"><input type="checkbox" name="consent" aria-invalid={!!errors.consent} aria-describedby={errors.consent ? "consent-error" : undefined} /> {consent}</label>
          {errors.consent && <p id="consent-error" role="alert" className="error">{errors.consent}</p>}
        </div>
      )}
      {honeypot && (
        <div className="honeypot" aria-hidden="true">
          <label>Website<input name="website" tabIndex={-1} autoComplete="off" /></label>
        </div>
      )}
      {problem && <p role="alert" className="error">{problem}</p>}
      <button disabled={busy}>{busy ? "Sending…" : submitLabel}</button>
    </form>
  );
}
