// The demo wallet page: plays a partner site that embeds the widget the way
// partners do, through the loader (`cargo xtask widget` writes one for this
// page's build, which adds the balance card, activity list and event log, to
// demo-widget/; partners load the one at /widget/v1/).
//
// A same-origin module (see Trunk.toml), so the page needs no inline script.
// Query parameters preselect the demo:
//   ?user=ayse&locale=en&mode=redirect&theme=dark&endpoint=http://127.0.0.1:8080

const params = new URLSearchParams(location.search);
const endpoint = (params.get("endpoint") || location.origin).replace(/\/+$/, "");
const widget = await import(new URL("demo-widget/pientegra.js", import.meta.url));

const TEXT = {
  tr: {
    brand: "Demo cüzdan",
    user: "Demo kullanıcı",
    language: "Dil",
    mode: "Açılış",
    theme: "Tema",
    sandbox: "Sandbox konsolu ↗",
    footer:
      "Bu sayfa bir iş ortağı sitesini taklit eder. Widget yalnızca kısa ömürlü bir widget jetonu taşır; API anahtarı ve webhook sırrı sunucuda kalır.",
    choose: "Başlamak için bir demo kullanıcı seçin.",
    starting: "Oturum açılıyor…",
    failed: "Demo oturumu açılamadı. Demo sunucusu çalışıyor mu?",
  },
  en: {
    brand: "Demo wallet",
    user: "Demo user",
    language: "Language",
    mode: "Opening",
    theme: "Theme",
    sandbox: "Sandbox console ↗",
    footer:
      "This page plays a partner site. The widget only holds a short-lived widget token; the API key and the webhook secret stay on the server.",
    choose: "Choose a demo user to start.",
    starting: "Signing in…",
    failed: "Could not start a demo session. Is the demo server running?",
  },
};

const stored = (name) => sessionStorage.getItem(`pientegra-demo:${name}`);
const pick = (value, allowed, fallback) => (allowed.includes(value) ? value : fallback);
const state = {
  endpoint,
  user: params.get("user") || stored("user"),
  locale: pick(params.get("locale") || stored("locale"), ["tr", "en"], "tr"),
  mode: pick(params.get("mode") || stored("mode"), ["popup", "redirect", "auto", "iframe"], "popup"),
  theme: pick(params.get("theme") || stored("theme"), ["light", "dark", "auto"], "light"),
  token: null,
};

const $ = (id) => document.getElementById(id);
const message = $("demo-message");
const mounted = [];

function say(key) {
  message.textContent = key ? TEXT[state.locale][key] : "";
}

function translatePage() {
  document.documentElement.lang = state.locale;
  document.body.dataset.theme = state.theme;
  for (const el of document.querySelectorAll("[data-text]")) {
    el.textContent = TEXT[state.locale][el.dataset.text];
  }
  for (const button of document.querySelectorAll("[data-user]")) {
    button.setAttribute("aria-pressed", String(button.dataset.user === state.user));
  }
  $("locale").value = state.locale;
  $("mode").value = state.mode;
  $("theme").value = state.theme;
}

function remember() {
  for (const name of ["user", "locale", "mode", "theme"]) {
    if (state[name]) sessionStorage.setItem(`pientegra-demo:${name}`, state[name]);
  }
  const query = new URLSearchParams(params);
  for (const name of ["user", "locale", "mode", "theme"]) {
    if (state[name]) query.set(name, state[name]);
  }
  history.replaceState(null, "", `${location.pathname}?${query}`);
}

/// (Re)mounts every widget for the current user, locale, mode and theme.
function render() {
  while (mounted.length) mounted.pop().unmount();
  const options = {
    endpoint: state.endpoint,
    token: state.token,
    locale: state.locale,
    mode: state.mode,
    theme: state.theme,
  };
  for (const id of ["deposit", "withdrawal"]) {
    const element = $(id);
    // Hidden until signed in: without a token the element says it has none.
    element.hidden = !state.token;
    for (const name of ["endpoint", "locale", "mode", "theme", "token"]) {
      if (options[name]) element.setAttribute(name, options[name]);
      else element.removeAttribute(name);
    }
  }
  if (!state.token) return;
  mounted.push(widget.mountBalance($("balance"), options));
  mounted.push(widget.mountActivity($("activity"), options));
  mounted.push(widget.mountEventLog($("events"), options));
}

async function signIn(user, label) {
  state.user = user;
  state.token = null;
  translatePage();
  render();
  say("starting");
  try {
    const response = await fetch(`${state.endpoint}/api/session`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ externalUserId: user, label }),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const session = await response.json();
    if (state.user !== user) return; // another user was chosen meanwhile
    state.token = session.token;
    say(null);
  } catch (error) {
    console.warn("pientegra demo: session failed", error);
    say("failed");
  }
  remember();
  render();
}

async function loadConfig() {
  try {
    const response = await fetch(`${state.endpoint}/demo/config`);
    if (!response.ok) return;
    const config = await response.json();
    if (config.sandboxConsoleUrl) $("sandbox-link").href = config.sandboxConsoleUrl;
  } catch {
    // Keep the default link.
  }
}

for (const button of document.querySelectorAll("[data-user]")) {
  button.addEventListener("click", () => signIn(button.dataset.user, button.dataset.label));
}
for (const name of ["locale", "mode", "theme"]) {
  $(name).addEventListener("change", (event) => {
    state[name] = event.target.value;
    translatePage();
    remember();
    render();
  });
}

translatePage();
loadConfig();
const preset = document.querySelector(`[data-user="${CSS.escape(state.user || "")}"]`);
if (state.user) {
  signIn(state.user, preset ? preset.dataset.label : undefined);
} else {
  say("choose");
}
