/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The API serves the built files at `/` (services/api/app.py); `npm run dev` proxies the API
// of a `jobstream up` on its default port.
export default defineConfig({
  plugins: [react()],
  // Into the Python package, so a `pip install` of jobstream carries the built UI.
  build: { outDir: "../services/api/ui_dist", emptyOutDir: true, chunkSizeWarningLimit: 1500 },
  server: { proxy: { "/api": "http://127.0.0.1:8000" } },
  test: { environment: "jsdom", include: ["src/**/*.test.ts", "src/**/*.test.tsx"] },
});
