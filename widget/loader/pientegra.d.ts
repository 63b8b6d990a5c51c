/**
 * Pientegra widget: type declarations of the loader `pientegra.js`.
 *
 * A partner page needs one module script and an element:
 *
 * ```html
 * <script type="module" src="https://kit.partner.example/widget/v1/pientegra.js"></script>
 * <pientegra-deposit token="…"></pientegra-deposit>
 * ```
 *
 * or imports the same URL to mount the widgets from its own code. To type
 * such an import, put this file in the project and map the URL to it in
 * `tsconfig.json`:
 *
 * ```json
 * { "compilerOptions": { "paths": {
 *   "https://kit.partner.example/widget/v1/pientegra.js": ["./types/pientegra.d.ts"] } } }
 * ```
 *
 * Amounts are strings of minor units, as the companion server sends them
 * ("150000" is 1,500.00 TRY): read them with `BigInt()`, never as floats.
 */

/**
 * How the deposit opens Pientegra's hosted page.
 * - `popup`: a popup window (the default).
 * - `redirect`: the whole page goes there and comes back.
 * - `auto`: a popup, or a redirect when the browser blocks the popup.
 * - `iframe`: an in-page dialog, when the hosted page may be framed by this
 *   page's origin; otherwise a popup, and the widget says why.
 */
export type PientegraMode = "popup" | "redirect" | "auto" | "iframe";

/** Colours: `light` (the default), `dark`, or `auto` (the system's preference). */
export type PientegraTheme = "light" | "dark" | "auto";

/** Turkish or English, as `tr` / `en` or a BCP 47 tag of either (`tr-TR`, `en-GB`). */
export type PientegraLocale = "tr" | "en" | `tr-${string}` | `en-${string}`;

/** What `mountDeposit` and `mountWithdrawal` take; the elements read the same names as attributes. */
export interface PientegraOptions {
  /** The widget token your server minted for this user (required). */
  token: string;
  /** The companion server's origin. Default: the origin the loader was loaded from. */
  endpoint?: string;
  /** Default: the page's `<html lang>` when it is Turkish or English, else `tr`. */
  locale?: PientegraLocale;
  /** Default: `popup`. */
  mode?: PientegraMode;
  /** Default: `light`. */
  theme?: PientegraTheme;
}

/** A mounted widget. */
export interface PientegraHandle {
  /** Removes the widget from its element (calling it again does nothing). */
  unmount(): void;
  /**
   * Gives the widget a fresh token, typically after `pientegra:token-expired`.
   * The widget keeps its state: an amount being typed, a deposit in progress.
   */
  setToken(token: string): void;
}

/** Mounts the deposit widget into `element`; the handle is returned at once, before `ready`. */
export function mountDeposit(element: HTMLElement, options: PientegraOptions): PientegraHandle;

/** Mounts the withdrawal form into `element`; the handle is returned at once, before `ready`. */
export function mountWithdrawal(element: HTMLElement, options: PientegraOptions): PientegraHandle;

/**
 * Resolves once the widget's module is loaded and initialised; rejects when
 * it cannot be loaded (each element then says why). Widgets need not wait
 * for it: until then they show a loading line.
 */
export const ready: Promise<void>;

/** A deposit's status, as Pientegra reports it. */
export type DepositStatus =
  | "RESERVED"
  | "PENDING_REVIEW"
  | "APPROVED"
  | "REJECTED"
  | "AUTO_CANCELLED"
  | "LATE_ARRIVAL";

/** A withdrawal's status, as Pientegra reports it. */
export type WithdrawalStatus = "PENDING_REVIEW" | "APPROVED" | "SENT" | "REJECTED" | "RETURNED";

/** The detail of `pientegra:deposit-status`. */
export interface DepositStatusDetail {
  readonly intentId: string;
  /** The reference the user quotes with the transfer. */
  readonly referenceNo: string;
  readonly status: DepositStatus;
  /** Minor units, as a string. */
  readonly amount: string;
  readonly currency: "TRY";
  /** Why Pientegra rejected the deposit, when it did. */
  readonly rejectedReason: string | null;
}

/** The detail of `pientegra:withdrawal-status`. */
export interface WithdrawalStatusDetail {
  readonly withdrawalId: string;
  readonly referenceNo: string;
  readonly status: WithdrawalStatus;
  /** Minor units, as a string. */
  readonly amount: string;
  readonly currency: "TRY";
  /** The destination IBAN, its first and last four characters shown: "TR33 **** **** **** **** **13 26". */
  readonly ibanMasked: string;
  /** Why the withdrawal was rejected, when it was. */
  readonly rejectedReason: string | null;
}

/** The detail of `pientegra:balance`. */
export interface BalanceDetail {
  /** What the user may spend or withdraw, minor units, as a string. */
  readonly available: string;
  /** What pending withdrawals hold, minor units, as a string. */
  readonly reserved: string;
  readonly currency: "TRY";
}

/** The detail of `pientegra:error`. */
export interface ErrorDetail {
  /**
   * A stable code: the server's (`amount_below_min`, `insufficient_funds`, `rate_limited`, …) or the
   * widget's (`origin_not_allowed`, `invalid_option`, `token_missing`, `load_failed`). Branch on it, not on
   * the message.
   */
  readonly code: string;
  /** The text the user saw, in the widget's language. */
  readonly message: string;
}

/** The detail of `pientegra:token-expired`. */
export interface TokenExpiredDetail {
  /**
   * The server's code: `token_expired` when the token's lifetime is over,
   * `unauthorized` when the server does not accept it (not a JWT, another
   * secret, altered), `forbidden` when it does not let this user do this, and
   * for a token your backend minted wrongly: `token_wrong_algorithm` (`alg`
   * is not HS256), `token_wrong_audience` (`aud` is not
   * `pientegra-kit/widget`), `token_missing_claim` (no `sub`, `iat` or
   * `exp`), `token_lifetime_refused` (`exp` not after `iat`, or beyond the
   * server's maximum lifetime), `token_not_yet_valid` (`iat` or `nbf` ahead
   * of the server's clock), `token_invalid_claim` (`sub` or `name` not valid).
   */
  readonly code:
    | "token_expired"
    | "unauthorized"
    | "forbidden"
    | "token_wrong_algorithm"
    | "token_wrong_audience"
    | "token_missing_claim"
    | "token_lifetime_refused"
    | "token_not_yet_valid"
    | "token_invalid_claim";
}

/**
 * The events the widgets dispatch on their element (`<pientegra-deposit>`,
 * `<pientegra-withdrawal>`, or the element given to `mountDeposit` /
 * `mountWithdrawal`). Each is a `CustomEvent` that bubbles and is composed,
 * so a listener on any ancestor, the document or the window hears it too.
 */
export interface PientegraEventMap {
  /**
   * Fired by the deposit widget for a deposit it started, on every status it
   * learns, the first one (`RESERVED`) included.
   */
  "pientegra:deposit-status": CustomEvent<DepositStatusDetail>;
  /** Fired by the withdrawal form for a withdrawal it requested, on every status it learns. */
  "pientegra:withdrawal-status": CustomEvent<WithdrawalStatusDetail>;
  /** Fired by each widget when the balance it knows changes, the first load included. */
  "pientegra:balance": CustomEvent<BalanceDetail>;
  /** Fired when the widget shows the user an error. */
  "pientegra:error": CustomEvent<ErrorDetail>;
  /**
   * Fired when the server no longer accepts the token. Fetch a fresh one and
   * call `handle.setToken(token)` or set the element's `token` attribute:
   * no reload, and the widget keeps its state.
   */
  "pientegra:token-expired": CustomEvent<TokenExpiredDetail>;
}

/** The attributes the elements read: the options of `mountDeposit`, as strings. */
export interface PientegraAttributes {
  token: string;
  endpoint: string;
  locale: PientegraLocale;
  mode: PientegraMode;
  theme: PientegraTheme;
}

/**
 * What `<pientegra-deposit>` and `<pientegra-withdrawal>` share: the element
 * mounts its widget when it has a `token` attribute, and follows every
 * change of its attributes.
 */
export interface PientegraElement extends HTMLElement {
  /** Sets one of the widget's attributes; the value is checked against the option's type. */
  setAttribute<K extends keyof PientegraAttributes>(name: K, value: PientegraAttributes[K]): void;
  /** Any other attribute. */
  setAttribute<N extends string>(qualifiedName: N extends keyof PientegraAttributes ? never : N, value: string): void;

  addEventListener<K extends keyof PientegraEventMap>(
    type: K,
    listener: (this: this, event: PientegraEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener<K extends keyof HTMLElementEventMap>(
    type: K,
    listener: (this: this, event: HTMLElementEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof PientegraEventMap>(
    type: K,
    listener: (this: this, event: PientegraEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener<K extends keyof HTMLElementEventMap>(
    type: K,
    listener: (this: this, event: HTMLElementEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | EventListenerOptions,
  ): void;
}

/**
 * `<pientegra-deposit token="…">`: the deposit widget. Fires
 * `pientegra:deposit-status`, `pientegra:balance`, `pientegra:error` and
 * `pientegra:token-expired`.
 */
export interface PientegraDepositElement extends PientegraElement {}

/**
 * `<pientegra-withdrawal token="…">`: the withdrawal form. Fires
 * `pientegra:withdrawal-status`, `pientegra:balance`, `pientegra:error` and
 * `pientegra:token-expired`.
 */
export interface PientegraWithdrawalElement extends PientegraElement {}

declare global {
  interface HTMLElementTagNameMap {
    "pientegra-deposit": PientegraDepositElement;
    "pientegra-withdrawal": PientegraWithdrawalElement;
  }
  // The events bubble and are composed: typed wherever a page listens for them.
  interface HTMLElementEventMap extends PientegraEventMap {}
  interface DocumentEventMap extends PientegraEventMap {}
  interface WindowEventMap extends PientegraEventMap {}
}
