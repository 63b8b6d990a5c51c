// The test partner page's own script: it records what a test checks (the
// widget's events, CSP violations, console errors and warnings) and plays a
// partner that hands the widget a fresh token when the old one expires.
// Loaded before the widget's loader, so it sees everything.

const seen = (window.partner = { events: [], violations: [], errors: [], warnings: [], tokensFetched: 0 });

document.addEventListener("securitypolicyviolation", (e) => {
  seen.violations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
window.addEventListener("error", (e) => seen.errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => seen.errors.push(String(e.reason)));
for (const level of ["error", "warn"]) {
  const original = console[level].bind(console);
  console[level] = (...args) => {
    (level === "error" ? seen.errors : seen.warnings).push(args.map(String).join(" "));
    original(...args);
  };
}

const NAMES = [
  "pientegra:deposit-status",
  "pientegra:withdrawal-status",
  "pientegra:balance",
  "pientegra:error",
  "pientegra:token-expired",
];
for (const name of NAMES) {
  document.addEventListener(name, (e) => {
    seen.events.push({ type: e.type, target: e.target.id, composed: e.composed, bubbles: e.bubbles, detail: e.detail });
  });
}

// A partner backend mints tokens for its logged-in user; this page asks its own.
document.addEventListener("pientegra:token-expired", async (e) => {
  if (document.body.dataset.refresh !== "yes") return;
  const user = document.body.dataset.user;
  const response = await fetch(`/token?user=${encodeURIComponent(user)}&seconds=600`);
  seen.tokensFetched += 1;
  e.target.setAttribute("token", await response.text());
});
