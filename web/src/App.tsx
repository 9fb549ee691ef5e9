import { lazy, Suspense, type ReactNode } from "react";
import { BrowserRouter, Link, Navigate, Route, Routes, useLocation } from "react-router-dom";
import { Layout } from "./components/Layout";
import { SessionProvider, useSession } from "./session";

// Each page is its own chunk, loaded when first opened: the login page and the public form
// (framed on partners' sites) do not carry the dashboard's charts.
const DashboardPage = lazy(() => import("./pages/Dashboard").then((m) => ({ default: m.DashboardPage })));
const LeadDetailPage = lazy(() => import("./pages/LeadDetail").then((m) => ({ default: m.LeadDetailPage })));
const LeadsPage = lazy(() => import("./pages/Leads").then((m) => ({ default: m.LeadsPage })));
const LoginPage = lazy(() => import("./pages/Login").then((m) => ({ default: m.LoginPage })));
const NewLeadPage = lazy(() => import("./pages/NewLead").then((m) => ({ default: m.NewLeadPage })));
const ProfilePage = lazy(() => import("./pages/Profile").then((m) => ({ default: m.ProfilePage })));
const PublicFormPage = lazy(() => import("./pages/PublicForm").then((m) => ({ default: m.PublicFormPage })));
const ForgotPasswordPage = lazy(() => import("./pages/ForgotPassword").then((m) => ({ default: m.ForgotPasswordPage })));
const ResetPasswordPage = lazy(() => import("./pages/ResetPassword").then((m) => ({ default: m.ResetPasswordPage })));
const UnsubscribePage = lazy(() => import("./pages/Unsubscribe").then((m) => ({ default: m.UnsubscribePage })));
const RegisterPage = lazy(() => import("./pages/Register").then((m) => ({ default: m.RegisterPage })));
const AuditHomePage = lazy(() => import("./pages/audit/AuditHome").then((m) => ({ default: m.AuditHomePage })));
const AuditLeadPage = lazy(() => import("./pages/audit/AuditLead").then((m) => ({ default: m.AuditLeadPage })));
const AuditPartnerPage = lazy(() => import("./pages/audit/AuditPartner").then((m) => ({ default: m.AuditPartnerPage })));
const TeamPage = lazy(() => import("./pages/Team").then((m) => ({ default: m.TeamPage })));

function NotFound() {
  return (
    <section className="narrow">
      <h1>Page not found</h1>
      <p>There is no page at this address. <Link to="/">Go to the dashboard</Link>.</p>
    </section>
  );
}

/** A page for a logged-in user. Auditors have pages of their own (under /audit) and partners'
 *  users theirs: each is sent to its own start rather than to a page that would refuse it. */
function RequireSession({ children, admin, auditor }: { children: ReactNode; admin?: boolean; auditor?: boolean }) {
  const { session, ended } = useSession();
  const location = useLocation();
  if (!session) return <Navigate to={`/login?${ended ? "expired=1&" : ""}next=${encodeURIComponent(location.pathname + location.search)}`} replace />;
  const isAuditor = session.user.role === "auditor";
  if (isAuditor && !auditor) return <Navigate to="/audit" replace />;
  if (!isAuditor && auditor) return <Navigate to="/" replace />;
  if (admin && session.user.role !== "admin") return <Navigate to="/" replace />;
  return <>{children}</>;
}

export function App() {
  return (
    <SessionProvider>
      <BrowserRouter>
        <Suspense fallback={<p role="status">Loading…</p>}>
        <Routes>
          <Route path="/public-form" element={<main id="main"><PublicFormPage /></main>} />
          <Route
            path="*"
            element={
              <Layout>
                <Routes>
                  <Route path="/login" element={<LoginPage />} />
                  <Route path="/register" element={<RegisterPage />} />
                  <Route path="/forgot-password" element={<ForgotPasswordPage />} />
                  <Route path="/reset-password" element={<ResetPasswordPage />} />
                  <Route path="/unsubscribe" element={<UnsubscribePage />} />
                  <Route path="/" element={<RequireSession><DashboardPage /></RequireSession>} />
                  <Route path="/leads" element={<RequireSession><LeadsPage /></RequireSession>} />
                  <Route path="/leads/new" element={<RequireSession><NewLeadPage /></RequireSession>} />
                  <Route path="/leads/:id" element={<RequireSession><LeadDetailPage /></RequireSession>} />
                  <Route path="/team" element={<RequireSession admin><TeamPage /></RequireSession>} />
                  <Route path="/profile" element={<RequireSession><ProfilePage /></RequireSession>} />
                  <Route path="/audit" element={<RequireSession auditor><AuditHomePage /></RequireSession>} />
                  <Route path="/audit/leads/:id" element={<RequireSession auditor><AuditLeadPage /></RequireSession>} />
                  <Route path="/audit/partners/:id" element={<RequireSession auditor><AuditPartnerPage /></RequireSession>} />
                  <Route path="*" element={<NotFound />} />
                </Routes>
              </Layout>
            }
          />
        </Routes>
        </Suspense>
      </BrowserRouter>
    </SessionProvider>
  );
}
