/**
 * A partner page's script: it mounts both widgets, follows every event they
 * dispatch, and renews the token when it expires. The tests type-check it
 * against `pientegra.d.ts` (`tsc --noEmit --strict`, see tsconfig.json).
 *
 * On a real page the import names the companion server's URL,
 * `https://kit.partner.example/widget/v1/pientegra.js` (see the top of
 * `pientegra.d.ts` for the `paths` entry that types it).
 */
import {
  mountDeposit,
  mountWithdrawal,
  ready,
  type BalanceDetail,
  type DepositStatusDetail,
  type ErrorDetail,
  type PientegraDepositElement,
  type PientegraHandle,
  type PientegraOptions,
  type PientegraWithdrawalElement,
  type WithdrawalStatusDetail,
} from "./pientegra.js";

/** A widget token for the signed-in user, from the partner's own server (which holds the kit's secret). */
async function freshToken(): Promise<string> {
  const response = await fetch("/wallet/pientegra-token", { method: "POST", credentials: "same-origin" });
  if (!response.ok) {
    throw new Error(`no widget token: ${response.status}`);
  }
  const body: { token: string } = await response.json();
  return body.token;
}

/** "150000" (minor units) → "1500.00 TRY", exact: amounts are never floats. */
function money(minor: string, currency: "TRY"): string {
  const units = BigInt(minor);
  return `${units / 100n}.${(units % 100n).toString().padStart(2, "0")} ${currency}`;
}

function unreachable(value: never): never {
  throw new Error(`unexpected status ${String(value)}`);
}

function depositLine(deposit: DepositStatusDetail): string {
  const amount = money(deposit.amount, deposit.currency);
  switch (deposit.status) {
    case "RESERVED":
      return `Transfer ${amount} quoting ${deposit.referenceNo}`;
    case "PENDING_REVIEW":
      return `${amount} arrived and is being checked`;
    case "APPROVED":
      return `${amount} credited`;
    case "REJECTED":
      return `${amount} rejected: ${deposit.rejectedReason ?? "no reason given"}`;
    case "AUTO_CANCELLED":
      return `Deposit ${deposit.intentId} expired before the transfer came`;
    case "LATE_ARRIVAL":
      return `${amount} arrived after the deposit had expired: support will contact you`;
    default:
      return unreachable(deposit.status);
  }
}

function withdrawalLine(withdrawal: WithdrawalStatusDetail): string {
  const amount = money(withdrawal.amount, withdrawal.currency);
  switch (withdrawal.status) {
    case "PENDING_REVIEW":
    case "APPROVED":
      return `${amount} to ${withdrawal.ibanMasked} is on its way (${withdrawal.referenceNo})`;
    case "SENT":
      return `${amount} sent to ${withdrawal.ibanMasked}`;
    case "REJECTED":
    case "RETURNED":
      return `${amount} back in your wallet: ${withdrawal.rejectedReason ?? withdrawal.status}`;
    default:
      return unreachable(withdrawal.status);
  }
}

function show(line: string): void {
  const status = document.getElementById("wallet-status");
  if (status) {
    status.textContent = line;
  }
}

// Programmatic mounting into the page's own containers.
const depositBox = document.getElementById("deposit");
const withdrawalBox = document.getElementById("withdrawal");
if (!depositBox || !withdrawalBox) {
  throw new Error("the page needs #deposit and #withdrawal");
}
const options: PientegraOptions = {
  token: await freshToken(),
  endpoint: "https://kit.partner.example",
  locale: "tr-TR",
  mode: "iframe",
  theme: "auto",
};
const deposit: PientegraHandle = mountDeposit(depositBox, options);
const withdrawal: PientegraHandle = mountWithdrawal(withdrawalBox, { ...options, mode: "popup", locale: "en" });

depositBox.addEventListener("pientegra:deposit-status", (event) => show(depositLine(event.detail)));
withdrawalBox.addEventListener("pientegra:withdrawal-status", (event) => show(withdrawalLine(event.detail)));
for (const [box, handle] of [
  [depositBox, deposit],
  [withdrawalBox, withdrawal],
] as const) {
  box.addEventListener("pientegra:token-expired", async (event) => {
    console.info(`renewing the widget token (${event.detail.code})`);
    handle.setToken(await freshToken());
  });
}

// The events bubble: one listener on the document hears both widgets.
const onBalance = (event: CustomEvent<BalanceDetail>): void => {
  show(`Available ${money(event.detail.available, event.detail.currency)}, held ${money(event.detail.reserved, "TRY")}`);
};
document.addEventListener("pientegra:balance", onBalance);
window.addEventListener("pientegra:error", (event) => {
  const error: ErrorDetail = event.detail;
  if (error.code === "insufficient_funds") {
    show("Top up your wallet first");
  }
});

// The custom elements, found through HTMLElementTagNameMap.
const depositElement: PientegraDepositElement | null = document.querySelector("pientegra-deposit");
if (depositElement) {
  depositElement.setAttribute("mode", "auto");
  depositElement.setAttribute("theme", "dark");
  depositElement.setAttribute("data-partner", "any other attribute");
  depositElement.addEventListener("pientegra:deposit-status", function (event) {
    this.dataset.lastStatus = event.detail.status;
    show(depositLine(event.detail));
  });
  depositElement.addEventListener("pientegra:token-expired", async () => {
    // The attribute works as setToken() does: the widget keeps its state.
    depositElement.setAttribute("token", await freshToken());
  });
  depositElement.addEventListener("pientegra:error", (event) => console.warn(event.detail.code, event.detail.message));
  depositElement.addEventListener("focusin", (event) => console.debug("focus from", event.relatedTarget));
}
const withdrawalElement = document.querySelector("pientegra-withdrawal");
withdrawalElement?.addEventListener("pientegra:withdrawal-status", (event) => show(withdrawalLine(event.detail)));
withdrawalElement?.addEventListener("pientegra:balance", onBalance);

// An element created from script mounts once it has a token.
const created: PientegraWithdrawalElement = document.createElement("pientegra-withdrawal");
created.setAttribute("locale", "en-GB");
created.setAttribute("token", await freshToken());
document.body.append(created);

await ready;
console.info("Pientegra widget loaded");

window.addEventListener("pagehide", () => {
  document.removeEventListener("pientegra:balance", onBalance);
  withdrawalElement?.removeEventListener("pientegra:balance", onBalance);
  deposit.unmount();
  withdrawal.unmount();
});
