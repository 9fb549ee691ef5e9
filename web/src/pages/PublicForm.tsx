import { useEffect, useState } from "react";
import { useSearchParams } from "react-router-dom";
import { api, ApiError, type PartnerProfile } from "../api/client";
import { LeadForm, type LeadFields } from "../components/LeadForm";
import { Loading } from "../components/Layout";
import { HEIGHT_MESSAGE } from "../text/embed";

/** In a frame, tells the page around it how tall the form is, whenever that changes (the embed
 *  snippet sizes the frame to it, so the Send button is never cut off). */
function usePostedHeight() {
  useEffect(() => {
    if (window.parent === window) return;
    const post = () => window.parent.postMessage({ type: HEIGHT_MESSAGE, height: document.documentElement.scrollHeight }, "*");
    const observer = new ResizeObserver(post);
    observer.observe(document.body);
    post();
    return () => observer.disconnect();
  }, []);
}

/** The sentence a visitor agrees to when the partner asks for consent. */
export function consentSentence(partnerName: string): string {
  return `I agree that ${partnerName} may contact me about this enquiry.`;
}

export function PublicFormPage() {
  const [params] = useSearchParams();
  const partnerId = params.get("partnerId");
  // The partner chose to ask for consent (`&consent=1` in its link and embed code).
  const asksConsent = params.get("consent") === "1";
  const [partner, setPartner] = useState<PartnerProfile | null | undefined>(undefined);
  const [thanks, setThanks] = useState(false);
  usePostedHeight();
  useEffect(() => {
    if (!partnerId) return setPartner(null);
    api<PartnerProfile>(`/public/partners/${partnerId}`).then(setPartner, () => setPartner(null));
  }, [partnerId]);
  const consent = partner && asksConsent ? consentSentence(partner.name) : undefined;
  async function submit({ consent: agreed, ...fields }: LeadFields & { website?: string }) {
    // What the person agreed to is kept with the lead, word for word, in its sealed submission.
    const metadata = consent && agreed ? { metadata: { consent } } : {};
    try {
      await api("/leads", { method: "POST", body: { ...Object.fromEntries(Object.entries(fields).filter(([, v]) => v)), ...metadata, partnerId } });
      setThanks(true);
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) throw new Error("This partner is not taking submissions at the moment.");
      throw e;
    }
  }
  if (partner === undefined) return <Loading />;
  if (partner === null) return <section className="narrow"><h1>Form not found</h1><p role="alert">This form link is not valid.</p></section>;
  return (
    <section className="narrow">
      <h1>Contact {partner.name}</h1>
      {thanks ? (
        <p role="status">Thank you! {partner.name} will be in touch. <button type="button" className="link" onClick={() => setThanks(false)}>Send another</button></p>
      ) : (
        <LeadForm submitLabel="Send" onSubmit={submit} honeypot consent={consent} />
      )}
    </section>
  );
}
