/**
 * Debian's Chromium as the console's browser tests and `npm run bench:console` launch it (through
 * playwright-core, which downloads no browser of its own here): CHROMIUM_PATH, or /usr/bin/chromium.
 */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Headless without a sandbox (we run as root in containers), GPU or background traffic. */
export const CHROMIUM_LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];
