import { useEffect, useRef, useState } from "react";
import { api, type PartnerProfile } from "../api/client";
import { ErrorNote, Loading } from "../components/Layout";
import { useSession } from "../session";
import { embedCode, HEIGHT_MESSAGE } from "../text/embed";
import { ApiKeys } from "../components/ApiKeys";
import { Webhooks } from "../components/Webhooks";
import { YourAccount } from "../components/YourAccount";
import { markFormShared } from "../components/GettingStarted";

export function ProfilePage() {
  const { session } = useSession();
  const [profile, setProfile] = useState<PartnerProfile | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [askConsent, setAskConsent] = useState(false);
  useEffect(() => {
    api<PartnerProfile>(`/partners/${session?.user.partnerId}`, { token: session?.accessToken }).then(setProfile, setError);
  }, [session]);
  if (error) return <ErrorNote error={error} />;
  if (!profile) return <Loading />;
  const form = `${window.location.origin}/public-form?partnerId=${profile.id}${askConsent ? "&consent=1" : ""}`;
  return (
    <section>
      <h1>{profile.name}</h1>
      {session?.user.role === "admin" && (
        <>
          <dl className="fields">
            <dt>Email</dt><dd>{profile.email}</dd>
            <dt>Soho CRM partner id</dt><dd>{profile.sohoPartnerId}</dd>
            <dt>Tier</dt><dd>{profile.tier ?? "—"}</dd>
            <dt>Commission rate</dt><dd>{profile.commissionRate != null ? `${profile.commissionRate} %` : "—"}</dd>
            <dt>Status</dt><dd>{profile.status}</dd>
          </dl>
          <h2>Your public lead form</h2>
          <p>Anyone can send you leads at <a href={form}>{form}</a> <CopyButton text={form} what="link" onCopied={() => markFormShared(session?.user.id)} />. To embed it in your site, paste this code where the form should appear (it sizes itself to the form):</p>
          <label className="check"><input type="checkbox" name="askConsent" checked={askConsent} onChange={(e) => setAskConsent(e.target.checked)} /> Ask visitors to agree to be contacted (a required box on the form; what they agreed to is kept with the lead)</label>
          <label>Embed code<textarea readOnly rows={4} value={embedCode(form, profile.name)} /></label>
          <p><CopyButton text={embedCode(form, profile.name)} what="embed code" onCopied={() => markFormShared(session?.user.id)} /></p>
          <FormPreview url={form} />
          <ApiKeys partnerId={profile.id} token={session?.accessToken} />
          <Webhooks partnerId={profile.id} token={session?.accessToken} />
        </>
      )}
      <YourAccount />
    </section>
  );
}

/** Copies `text`, and says so (for screen readers too). */
function CopyButton({ text, what, onCopied }: { text: string; what: string; onCopied?: () => void }) {
  const [copied, setCopied] = useState<boolean | null>(null);
  async function copy() {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(true);
      onCopied?.();
    } catch {
      setCopied(false);
    }
    setTimeout(() => setCopied(null), 3000);
  }
  return (
    <>
      <button type="button" onClick={copy}>Copy {what}</button>
      <span role="status">{copied === true ? ` Copied the ${what}.` : copied === false ? ` Your browser would not copy: select the ${what} and copy it.` : ""}</span>
    </>
  );
}

/** The form as visitors see it, live, sized as the embed sizes it. */
function FormPreview({ url }: { url: string }) {
  const [height, setHeight] = useState(640);
  const frame = useRef<HTMLIFrameElement>(null);
  useEffect(() => {
    const listen = (e: MessageEvent) => {
      if (e.origin === window.location.origin && e.source === frame.current?.contentWindow && e.data?.type === HEIGHT_MESSAGE) {
        setHeight(Math.min(Math.max(Number(e.data.height) || 0, 200), 4000));
      }
    };
    window.addEventListener("message", listen);
    return () => window.removeEventListener("message", listen);
  }, []);
  return (
    <details>
      <summary>Preview your form</summary>
      <iframe ref={frame} src={url} title="Preview of your public lead form" width="100%" height={height} style={{ border: "1px solid #d0d7de" }} data-testid="form-preview" />
    </details>
  );
}
