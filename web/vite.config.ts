import { defineConfig } from 'vite';

/**
 * The console builds to web/dist, which the API serves at / (api/plugins/console.ts). No inline
 * scripts or styles are emitted, so the page runs under `script-src 'self'`.
 */
export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // Vite would inline a small module-preload polyfill script; every browser we support has it.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
});
