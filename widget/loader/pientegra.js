// The Pientegra widget's loader: the one file a partner page includes.
//
//   <script type="module" src="https://kit.example/widget/v1/pientegra.js"></script>
//   <pientegra-deposit token="…"></pientegra-deposit>
//
// It loads the content-named widget files beside it, each checked against the
// hash `cargo xtask widget` wrote here, and defines the elements at once: an
// element shows a loading line until the widget is ready, and a message (in
// the element and the console, with a `pientegra:error` event) when something
// is wrong. Nothing is sent to the API before the widget is ready and the
// companion server has said it accepts this page's origin.

const FILES = {
  js: ["__PK_JS__", "__PK_JS_INTEGRITY__"],
  wasm: ["__PK_WASM__", "__PK_WASM_INTEGRITY__"],
  css: ["__PK_CSS__", "__PK_CSS_INTEGRITY__"],
};

/** The mount function of each kind of widget, by the module's export name. */
const MOUNTS = {
  deposit: "mountDeposit",
  withdrawal: "mountWithdrawal",
  balance: "mountBalance",
  activity: "mountActivity",
  eventLog: "mountEventLog",
};
const ATTRIBUTES = ["endpoint", "token", "locale", "mode", "theme"];
const LOADING = { tr: "Yükleniyor…", en: "Loading…" };

// One loader per page: a second copy (another URL of this file) uses the first.
const KEY = Symbol.for("pientegra.widget.v1");
const loader = globalThis[KEY] ?? (globalThis[KEY] = start(import.meta.url));
if (loader.url !== import.meta.url) {
  console.warn(`pientegra: the loader is on this page twice (${loader.url} and ${import.meta.url}); the first one serves both`);
}

/** Resolves once the widget module is initialised; rejects if it cannot load. */
export const ready = loader.ready.then(() => undefined);
/** Mounts the deposit widget into `element`; returns its handle at once. */
export const mountDeposit = (element, options) => loader.mount("deposit", element, options);
/** Mounts the withdrawal form into `element`; returns its handle at once. */
export const mountWithdrawal = (element, options) => loader.mount("withdrawal", element, options);
/** The balance card, the activity list and the live event log: in the demo page's build only. */
export const mountBalance = (element, options) => loader.mount("balance", element, options);
export const mountActivity = (element, options) => loader.mount("activity", element, options);
export const mountEventLog = (element, options) => loader.mount("eventLog", element, options);

function start(url) {
  const base = new URL(".", url);
  const file = ([name]) => new URL(name, base).href;
  const css = document.createElement("link");
  Object.assign(css, { rel: "stylesheet", href: file(FILES.css), integrity: FILES.css[1], crossOrigin: "anonymous" });
  document.head.append(css);
  const wasm = fetch(file(FILES.wasm), { integrity: FILES.wasm[1], credentials: "omit" });
  wasm.catch(() => {}); // its failure surfaces through `ready`
  // A module script element checks the glue's integrity; `import()` then finds
  // the same module, already fetched and evaluated, by its URL.
  const ready = new Promise((resolve, reject) => {
    const script = document.createElement("script");
    Object.assign(script, { type: "module", src: file(FILES.js), integrity: FILES.js[1], crossOrigin: "anonymous" });
    script.onload = resolve;
    script.onerror = () => reject(refusal("load_failed", `could not load ${script.src} (network, CORS or integrity)`));
    document.head.append(script);
  })
    .then(() => import(file(FILES.js)))
    .then(async (module) => {
      await module.default({ module_or_path: wasm });
      return module;
    });
  ready.catch(() => {}); // reported by every widget waiting for it
  const checks = new Map();
  const api = {
    url,
    origin: base.origin,
    ready,
    /** Whether `endpoint` accepts this page's origin: one call per server and page. */
    embedCheck(endpoint) {
      if (!checks.has(endpoint)) {
        const answer = fetch(`${endpoint}/api/embed-check`, { credentials: "omit", cache: "no-store" })
          .then((response) => (response.ok ? response.json() : null))
          .catch(() => null); // unreachable: the widget's own calls will say so
        checks.set(endpoint, answer);
      }
      return checks.get(endpoint);
    },
    mount: (kind, element, options) => new Handle(api, kind, element, { ...options }),
  };
  define(api, "pientegra-deposit", "deposit");
  define(api, "pientegra-withdrawal", "withdrawal");
  return api;
}

/** A mounted (or mounting) widget: `unmount()`, `setToken(token)`. */
class Handle {
  #api;
  #kind;
  #element;
  #options;
  #widget = null;
  #note = null;
  #generation = 0;

  constructor(api, kind, element, options) {
    this.#api = api;
    this.#kind = kind;
    this.#element = element;
    this.#options = options;
    this.#mount();
  }

  async #mount() {
    const generation = ++this.#generation;
    const options = { endpoint: this.#api.origin, ...this.#options };
    options.endpoint = String(options.endpoint).replace(/\/+$/, "");
    this.#say("status", LOADING[language(options.locale)]);
    try {
      if (!(this.#element instanceof HTMLElement)) throw refusal("invalid_option", "mount needs an HTML element");
      // Both are under way; the check's answer first, since a page the server
      // does not list cannot load the widget files either, and this says why.
      const embed = await this.#api.embedCheck(options.endpoint);
      if (embed && embed.allowed === false) {
        throw refusal(
          "origin_not_allowed",
          `this page's origin (${location.origin}) is not in ALLOWED_ORIGINS of the companion server ${options.endpoint}`,
        );
      }
      const module = await this.#api.ready;
      if (generation !== this.#generation) return;
      const mount = module[MOUNTS[this.#kind]];
      if (typeof mount !== "function") {
        throw refusal("invalid_option", `this build of the widget has no ${MOUNTS[this.#kind]} (the demo page's has)`);
      }
      this.#say(null);
      this.#widget = mount(this.#element, options);
    } catch (error) {
      if (generation !== this.#generation) return;
      const code = error.code ?? "load_failed";
      const message = String(error.message ?? error);
      (code === "token_missing" ? console.warn : console.error)(message);
      this.#say("alert", message);
      this.#element.dispatchEvent?.(
        new CustomEvent("pientegra:error", { bubbles: true, composed: true, detail: { code, message } }),
      );
    }
  }

  /** Removes the widget (idempotent). */
  unmount() {
    this.#generation++;
    if (this.#widget) {
      this.#widget.unmount();
      this.#widget.free();
      this.#widget = null;
    }
    this.#say(null);
  }

  /**
   * Hands the widget a fresh token. For the same user (the token's `sub`) the
   * widget keeps its state; for another user it starts afresh.
   */
  setToken(token) {
    const same = subject(token) !== undefined && subject(token) === subject(this.#options.token);
    this.#options = { ...this.#options, token };
    if (this.#widget && same) {
      try {
        this.#widget.setToken(String(token));
        return;
      } catch {
        // Refused as malformed: remount, which shows why.
      }
    }
    this.unmount();
    this.#mount();
  }

  /** Shows a loading line (`status`) or a problem (`alert`) in the element, or removes it (`null`). */
  #say(role, text) {
    this.#note?.remove();
    this.#note = null;
    if (!role || !(this.#element instanceof HTMLElement)) return;
    const note = document.createElement("p");
    note.className = role === "alert" ? "pk-loader-note pk-error" : "pk-loader-note";
    note.setAttribute("role", role);
    note.dataset.testid = role === "alert" ? "widget-problem" : "widget-loading";
    note.textContent = text;
    this.#element.append(note);
    this.#note = note;
  }
}

/** `<pientegra-deposit>` and `<pientegra-withdrawal>`: attributes in, a widget out. */
function define(api, tag, kind) {
  if (customElements.get(tag)) return;
  customElements.define(
    tag,
    class extends HTMLElement {
      static observedAttributes = ATTRIBUTES;
      #handle = null;
      #dirty = true;
      #scheduled = false;

      connectedCallback() {
        this.#schedule();
      }
      disconnectedCallback() {
        this.#schedule();
      }
      attributeChangedCallback(name, old, value) {
        if (old === value) return;
        if (name === "token" && this.#handle && value && !this.#dirty) {
          this.#handle.setToken(value);
          return;
        }
        this.#dirty = true;
        this.#schedule();
      }
      // Attributes set right after the element is created or inserted are
      // read together, in one render, a microtask later.
      #schedule() {
        if (this.#scheduled) return;
        this.#scheduled = true;
        queueMicrotask(() => {
          this.#scheduled = false;
          this.#render();
        });
      }
      #render() {
        if (this.isConnected && this.#handle && !this.#dirty) return;
        this.#handle?.unmount();
        this.#handle = null;
        if (!this.isConnected) return;
        this.#dirty = false;
        const options = {};
        for (const name of ATTRIBUTES) {
          const value = this.getAttribute(name);
          if (value !== null) options[name] = value;
        }
        this.#handle = api.mount(kind, this, options);
      }
    },
  );
}

/** The `sub` of a widget token (its middle part is base64url JSON), if it has one. */
function subject(token) {
  try {
    const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).sub;
  } catch {
    return undefined;
  }
}

/** `tr` or `en`, for the loader's own words. */
function language(locale) {
  const tag = String(locale ?? document.documentElement.lang ?? "").toLowerCase();
  return tag.startsWith("en") ? "en" : "tr";
}

function refusal(code, message) {
  return Object.assign(new Error(`pientegra: ${message}`), { code });
}
