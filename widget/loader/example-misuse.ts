/**
 * What `pientegra.d.ts` must refuse. Every `@ts-expect-error` below marks a
 * line tsc must find wrong; a line it accepts is itself an error, so
 * declarations that grow looser fail the type check (tsconfig.json).
 */

// @ts-expect-error: the balance card is the demo page's, not the partner API's.
import { mountBalance } from "./pientegra.js";
import * as pientegra from "./pientegra.js";
import { mountDeposit, mountWithdrawal, ready } from "./pientegra.js";

declare const box: HTMLElement;
declare const token: string;

// Options.
// @ts-expect-error: the modes are popup, redirect, auto and iframe.
mountDeposit(box, { token, mode: "modal" });
// @ts-expect-error: the themes are light, dark and auto.
mountDeposit(box, { token, theme: "blue" });
// @ts-expect-error: Turkish and English only.
mountWithdrawal(box, { token, locale: "de-DE" });
// @ts-expect-error: the token is required.
mountDeposit(box, { mode: "popup" });
// @ts-expect-error: the token is a string.
mountDeposit(box, { token: 42 });
// @ts-expect-error: `endpoint`, misspelt.
mountDeposit(box, { token, endPoint: "https://kit.partner.example" });
// @ts-expect-error: an element, not a selector.
mountDeposit("#deposit", { token });

// The module.
// @ts-expect-error: there is no init() to call: the loader initialises the widget itself.
await pientegra.default();

// The handle and `ready`.
// @ts-expect-error: the handle has unmount(), not destroy().
mountDeposit(box, { token }).destroy();
// @ts-expect-error: setToken needs the token.
mountWithdrawal(box, { token }).setToken();
// @ts-expect-error: `ready` is a promise, not a function.
ready();

// Event details.
box.addEventListener("pientegra:deposit-status", (event) => {
  // @ts-expect-error: amounts are strings of minor units, not numbers.
  const amount: number = event.detail.amount;
  // @ts-expect-error: not a deposit status.
  if (event.detail.status === "CANCELLED") return;
  // @ts-expect-error: the currency is always TRY.
  if (event.detail.currency === "EUR") return;
  // @ts-expect-error: rejectedReason is null unless the deposit was rejected.
  console.log(event.detail.rejectedReason.length);
  // @ts-expect-error: details are read-only.
  event.detail.status = "APPROVED";
  // @ts-expect-error: a deposit has an intentId, not a withdrawalId.
  console.log(event.detail.withdrawalId, amount);
});
box.addEventListener("pientegra:withdrawal-status", (event) => {
  // @ts-expect-error: RESERVED is a deposit's status, not a withdrawal's.
  if (event.detail.status === "RESERVED") return;
  // @ts-expect-error: arithmetic needs BigInt(amount).
  console.log(Math.round(event.detail.amount));
});
box.addEventListener("pientegra:balance", (event) => {
  // @ts-expect-error: string + string is a string, not a sum.
  const total: number = event.detail.available + event.detail.reserved;
  console.log(total);
});
box.addEventListener("pientegra:token-expired", (event) => {
  // @ts-expect-error: the codes are token_expired, unauthorized, forbidden and the token_* refusals.
  if (event.detail.code === "expired") return;
});
box.addEventListener("pientegra:error", (event) => {
  // @ts-expect-error: the message is text, not an Error.
  const error: Error = event.detail.message;
  console.log(error);
});
box.addEventListener("pientegra:deposit-state", (event) => {
  // @ts-expect-error: a misspelt event name gives a plain Event, without a detail.
  console.log(event.detail);
});

// The elements.
const element = document.querySelector("pientegra-deposit");
// @ts-expect-error: querySelector may find nothing.
element.setAttribute("token", token);
if (element) {
  // @ts-expect-error: the mode attribute takes a mode.
  element.setAttribute("mode", "modal");
  // @ts-expect-error: the locale attribute takes Turkish or English.
  element.setAttribute("locale", "fr");
  element.addEventListener("pientegra:balance", (event) => {
    // @ts-expect-error: a balance has available and reserved, not amount.
    console.log(event.detail.amount);
  });
}
console.log(mountBalance);
