import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// The dev server forwards API calls to a portal on :8080 (`scripts/run`).
const api = ["/auth", "/leads", "/partners", "/dashboard", "/invite", "/public", "/dev", "/openapi.json"];

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: Object.fromEntries([
      ...api.map((path) => [path, { target: "http://127.0.0.1:8080", bypass: (req: { headers: Record<string, string | undefined> }) => (req.headers.accept?.startsWith("text/html") ? "/index.html" : undefined) }]),
      ["/ws", { target: "ws://127.0.0.1:8080", ws: true }],
    ]),
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
