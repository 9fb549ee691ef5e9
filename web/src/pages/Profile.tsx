import { useEffect, useState } from "react";
import { api, type PartnerProfile } from "../api/client";
import { ErrorNote, Loading } from "../components/Layout";
import { useSession } from "../session";
import { embedCode } from "../text/embed";
import { ApiKeys } from "../components/ApiKeys";
import { Webhooks } from "../components/Webhooks";
import { YourAccount } from "../components/YourAccount";

export function ProfilePage() {
  const { session } = useSession();
  const [profile, setProfile] = useState<PartnerProfile | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    api<PartnerProfile>(`/partners/${session?.user.partnerId}`, { token: session?.accessToken }).then(setProfile, setError);
  }, [session]);
  if (error) return <ErrorNote error={error} />;
  if (!profile) return <Loading />;
  const form = `${window.location.origin}/public-form?partnerId=${profile.id}`;
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
          <p>Anyone can send you leads at <a href={form}>{form}</a>. To embed it in your site:</p>
          <label>Embed code<textarea readOnly rows={3} value={embedCode(form, profile.name)} /></label>
          <ApiKeys partnerId={profile.id} token={session?.accessToken} />
          <Webhooks partnerId={profile.id} token={session?.accessToken} />
        </>
      )}
      <YourAccount />
    </section>
  );
}
