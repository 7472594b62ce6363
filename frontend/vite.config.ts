// Vite: builds the UI into dist/ (served by `netledger api|all --ui-dir`); in development
// the API paths are proxied to a local `netledger` on 127.0.0.1:8080 so the UI stays
// same-origin with the API (cookies, CSP) as in production.
import { defineConfig } from "vite";

const backend = process.env.NETLEDGER_API ?? "http://127.0.0.1:8080";

export default defineConfig({
  esbuild: { jsx: "automatic" },
  server: {
    port: 5173,
    strictPort: false,
    proxy: {
      "/api": { target: backend, changeOrigin: false },
      "/health": { target: backend },
      "/openapi.json": { target: backend },
    },
  },
  build: {
    outDir: "dist",
    sourcemap: true,
    target: "es2022",
  },
});
