import type { ReactNode } from "react";
import { BrowserRouter, Navigate, Route, Routes, useLocation } from "react-router-dom";
import { Layout } from "./components/Layout";
import { DashboardPage } from "./pages/Dashboard";
import { LeadDetailPage } from "./pages/LeadDetail";
import { LeadsPage } from "./pages/Leads";
import { LoginPage } from "./pages/Login";
import { NewLeadPage } from "./pages/NewLead";
import { ProfilePage } from "./pages/Profile";
import { PublicFormPage } from "./pages/PublicForm";
import { RegisterPage } from "./pages/Register";
import { TeamPage } from "./pages/Team";
import { SessionProvider, useSession } from "./session";

function RequireSession({ children, admin }: { children: ReactNode; admin?: boolean }) {
  const { session, ended } = useSession();
  const location = useLocation();
  if (!session) return <Navigate to={`/login?${ended ? "expired=1&" : ""}next=${encodeURIComponent(location.pathname + location.search)}`} replace />;
  if (admin && session.user.role !== "admin") return <Navigate to="/" replace />;
  return <>{children}</>;
}

export function App() {
  return (
    <SessionProvider>
      <BrowserRouter>
        <Routes>
          <Route path="/public-form" element={<main id="main"><PublicFormPage /></main>} />
          <Route
            path="*"
            element={
              <Layout>
                <Routes>
                  <Route path="/login" element={<LoginPage />} />
                  <Route path="/register" element={<RegisterPage />} />
                  <Route path="/" element={<RequireSession><DashboardPage /></RequireSession>} />
                  <Route path="/leads" element={<RequireSession><LeadsPage /></RequireSession>} />
                  <Route path="/leads/new" element={<RequireSession><NewLeadPage /></RequireSession>} />
                  <Route path="/leads/:id" element={<RequireSession><LeadDetailPage /></RequireSession>} />
                  <Route path="/team" element={<RequireSession admin><TeamPage /></RequireSession>} />
                  <Route path="/profile" element={<RequireSession><ProfilePage /></RequireSession>} />
                  <Route path="*" element={<p>Page not found.</p>} />
                </Routes>
              </Layout>
            }
          />
        </Routes>
      </BrowserRouter>
    </SessionProvider>
  );
}
