import { QueryClient, QueryClientProvider, useQuery } from "@tanstack/react-query";
import { App as AntApp, Badge, Button, ConfigProvider, Layout, Menu, Select, Space, Switch, theme, Typography } from "antd";
import { useState } from "react";
import { Link, Navigate, Route, Routes, useLocation, useNavigate } from "react-router";
import { domain, get, setDomain, setToken, token } from "./api";
import { LiveProvider, useLive } from "./live";
import { Analytics } from "./pages/Analytics";
import { Domains } from "./pages/Domains";
import { Events } from "./pages/Events";
import { JobDetail } from "./pages/JobDetail";
import { Overview } from "./pages/Overview";
import { Jobs } from "./pages/Jobs";
import { Login } from "./pages/Login";
import { ScheduleDetail, Schedules } from "./pages/Schedules";
import { Templates } from "./pages/Templates";
import { Workers } from "./pages/Workers";
import type { Info } from "./types";

// Ant Design's default status colours are lighter than WCAG AA's 4.5:1 for text on their own
// tinted backgrounds (tags, links, tabs); these darker ones pass axe-core's contrast check.
const CONTRAST = { colorPrimary: "#0958d9", colorPrimaryHover: "#0346b5", colorLinkHover: "#0346b5", colorInfo: "#0958d9", colorLink: "#0958d9", colorSuccess: "#2b7a0b", colorWarning: "#ad4e00", colorError: "#cf1322", colorSuccessText: "#1f5c07", colorWarningText: "#873800", colorErrorText: "#a8071a", colorInfoText: "#003eb3", colorTextSecondary: "rgba(0, 0, 0, 0.68)", colorTextTertiary: "rgba(0, 0, 0, 0.62)", colorTextDescription: "rgba(0, 0, 0, 0.62)", colorTextPlaceholder: "rgba(0, 0, 0, 0.6)", colorTextDisabled: "rgba(0, 0, 0, 0.55)" };

// The user's "reduce motion" setting turns Ant Design's animations off.
const REDUCED_MOTION = typeof window !== "undefined" && window.matchMedia?.("(prefers-reduced-motion: reduce)").matches;

// The domain an admin token acts on when no X-Domain is sent (events/domain.py DEFAULT_DOMAIN).
const HOME_DOMAIN = "prod";

const queryClient = new QueryClient({ defaultOptions: { queries: { retry: 1, refetchOnWindowFocus: false } } });

export function App() {
  const [dark, setDark] = useState(() => localStorage.getItem("jobstream.theme") === "dark");
  const [signedIn, setSignedIn] = useState(() => token() !== null);
  const toggle = (on: boolean) => {
    localStorage.setItem("jobstream.theme", on ? "dark" : "light");
    setDark(on);
  };
  return (
    <ConfigProvider theme={{ algorithm: dark ? theme.darkAlgorithm : theme.defaultAlgorithm, token: { ...(dark ? {} : CONTRAST), motion: !REDUCED_MOTION } }}>
      <AntApp>
        <QueryClientProvider client={queryClient}>
          {signedIn ? (
            <Shell dark={dark} onTheme={toggle} onSignOut={() => setSignedIn(false)} />
          ) : (
            <Routes>
              <Route path="*" element={<Login onSignedIn={() => setSignedIn(true)} />} />
            </Routes>
          )}
        </QueryClientProvider>
      </AntApp>
    </ConfigProvider>
  );
}

function Shell({ dark, onTheme, onSignOut }: { dark: boolean; onTheme: (on: boolean) => void; onSignOut: () => void }) {
  const [current, setCurrent] = useState(domain());
  const info = useQuery({ queryKey: ["info", current], queryFn: () => get<Info>("/info") });
  const navigate = useNavigate();
  const signOut = () => {
    setToken(null);
    setDomain("");
    queryClient.clear();
    onSignOut();
    navigate("/");
  };
  const pick = (d: string) => {
    setDomain(d);
    setCurrent(d);
    queryClient.clear();
  };
  return (
    <LiveProvider domain={current}>
      <Layout style={{ minHeight: "100vh" }}>
        <Layout.Header style={{ display: "flex", alignItems: "center", gap: 16, paddingInline: 16 }}>
          <Typography.Title level={4} style={{ margin: 0, color: "#fff" }}>
            <Link to="/overview" style={{ color: "inherit" }}>jobstream</Link>
          </Typography.Title>
          <Nav admin={info.data?.admin ?? false} />
          <Space style={{ marginLeft: "auto" }}>
            <LiveBadge />
            {info.data?.admin ? <DomainPicker value={current} onChange={pick} home={HOME_DOMAIN} /> : null}
            <Typography.Text style={{ color: "#fff" }} data-testid="whoami">
              {info.data ? `${info.data.domain}${info.data.admin ? " (admin)" : ""}` : ""}
            </Typography.Text>
            <Switch checkedChildren="dark" unCheckedChildren="light" checked={dark} onChange={onTheme} aria-label="dark theme" />
            <Button onClick={signOut}>Sign out</Button>
          </Space>
        </Layout.Header>
        <Layout.Content style={{ padding: 16 }}>
          <Routes key={current}>
            <Route path="/" element={<Navigate to="/overview" replace />} />
            <Route path="/overview" element={<Overview />} />
            <Route path="/jobs" element={<Jobs />} />
            <Route path="/jobs/:id" element={<JobDetail />} />
            <Route path="/workers" element={<Workers />} />
            <Route path="/events" element={<Events />} />
            <Route path="/analytics" element={<Analytics />} />
            <Route path="/templates" element={<Templates />} />
            <Route path="/domains" element={<Domains />} />
            <Route path="/schedules" element={<Schedules />} />
            <Route path="/schedules/:id" element={<ScheduleDetail />} />
            <Route path="*" element={<Typography.Text>No such page. <Link to="/jobs">Go to the jobs</Link>.</Typography.Text>} />
          </Routes>
        </Layout.Content>
      </Layout>
    </LiveProvider>
  );
}

function Nav({ admin }: { admin: boolean }) {
  const location = useLocation();
  const key = "/" + (location.pathname.split("/")[1] || "overview");
  const items = [
    { key: "/overview", label: <Link to="/overview">Overview</Link> },
    { key: "/jobs", label: <Link to="/jobs">Jobs</Link> },
    { key: "/workers", label: <Link to="/workers">Workers</Link> },
    { key: "/schedules", label: <Link to="/schedules">Schedules</Link> },
    { key: "/analytics", label: <Link to="/analytics">Analytics</Link> },
    { key: "/events", label: <Link to="/events">Events</Link> },
    { key: "/templates", label: <Link to="/templates">Templates</Link> },
    ...(admin ? [{ key: "/domains", label: <Link to="/domains">Domains</Link> }] : []),
  ];
  return <Menu theme="dark" mode="horizontal" disabledOverflow selectedKeys={[key]} items={items} style={{ flex: 1, minWidth: 0 }} />;
}

function LiveBadge() {
  const { state } = useLive();
  const status = state === "open" ? "success" : state === "retrying" ? "warning" : "default";
  const text = state === "open" ? "live" : state === "retrying" ? "reconnecting" : "offline";
  return <Badge status={status} text={<span style={{ color: "#fff" }}>{text}</span>} data-testid="live" />;
}

/** An admin's domain switcher; `home` is the domain an admin token acts on by default. */
function DomainPicker({ value, onChange, home }: { value: string; onChange: (d: string) => void; home: string }) {
  const domains = useQuery({
    queryKey: ["domains"],
    queryFn: () => get<{ items?: { name: string }[] } | { name: string }[]>("/admin/domains"),
  });
  const list = Array.isArray(domains.data) ? domains.data : (domains.data?.items ?? []);
  return (
    <Select
      aria-label="domain"
      style={{ width: 160 }}
      value={value || home}
      onChange={(d) => onChange(d === home ? "" : d)}
      options={[{ value: home, label: home }, ...list.filter((d) => d.name !== home).map((d) => ({ value: d.name, label: d.name }))]}
    />
  );
}
