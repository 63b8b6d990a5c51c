//! The hosted deposit page at `depositUrl` (`/d/{token}`): what to transfer,
//! where, with which reference, a countdown, and "I made the payment".
//!
//! The token is a JWT-like `header.payload.signature` (HS256 over
//! `{"intentId", "exp"}`) signed with a key that never leaves the process.
//! The page renders whatever state the intent is in, so reloading it, or
//! opening it again after the outcome, shows the truth instead of an error.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::StatusCode;
use pientegra_shared::Locale;
use pientegra_shared::iban::group_for_display;
use pientegra_shared::status::IntentStatus;
use pientegra_shared::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::html::{Page, esc, render};
use crate::state::{AppState, now};
use crate::store::IntentRecord;

/// The routes of the hosted page.
pub fn router() -> Router<AppState> {
    Router::new().route("/d/{token}", get(show)).route("/d/{token}/confirm", post(confirm))
}

/// The key deposit tokens are signed with: random per process.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

/// What a deposit token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub intent_id: Uuid,
    /// Unix seconds, as in a JWT.
    pub exp: i64,
}

/// `{"alg":"HS256","typ":"JWT"}`, base64url.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

impl TokenKey {
    /// A fresh random key.
    pub fn generate() -> TokenKey {
        TokenKey(rand::random())
    }

    fn mac(&self, signing_input: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(signing_input.as_bytes());
        mac
    }

    /// A token for `intent_id` valid until `expires_at` (rounded up to the second).
    pub fn sign(&self, intent_id: Uuid, expires_at: Timestamp) -> String {
        let exp = expires_at.timestamp() + i64::from(expires_at.timestamp_subsec_millis() > 0);
        let claims = serde_json::to_vec(&Claims { intent_id, exp }).expect("claims serialize");
        let signing_input = format!("{HEADER}.{}", URL_SAFE_NO_PAD.encode(claims));
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&signing_input).finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// The claims of a token this key signed, or `None` for anything else.
    /// Expiry is not checked here: the page shows an expired state for it.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        if header != HEADER {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        // `verify_slice` compares in constant time.
        self.mac(signing_input).verify_slice(&signature).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// The intent behind a token, expired first if its time is up, so the page
/// never offers to confirm a deposit the timer is about to cancel.
fn intent_for(state: &AppState, token: &str) -> Option<IntentRecord> {
    let claims = state.token_key.verify(token)?;
    let now = now();
    let stale = state
        .store()
        .intents
        .get(&claims.intent_id)
        .map(|intent| intent.status == IntentStatus::Reserved && intent.expires_at <= now)?;
    if stale {
        let _ = state.change(|store| store.expire_intent(claims.intent_id, now).map(drop));
    }
    state.store().intents.get(&claims.intent_id).cloned()
}

async fn show(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match intent_for(&state, &token) {
        Some(intent) => deposit_page(&state, &token, &intent),
        None => invalid_link(&state),
    }
}

/// "I made the payment": POST, then back to the page (POST/redirect/GET), so a
/// reload does not resubmit and the page shows the new state.
async fn confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(intent) = intent_for(&state, &token) else { return invalid_link(&state) };
    if intent.status == IntentStatus::Reserved {
        // Losing a race with the timer or the operator is fine: the page shows what won.
        let _ = state.change(|store| store.confirm_intent(intent.id, now()).map(drop));
    }
    Redirect::to(&format!("{}/d/{token}", state.base_url)).into_response()
}

fn deposit_page(state: &AppState, token: &str, intent: &IntentRecord) -> Response {
    let amount = esc(&intent.amount.format(Locale::Tr));
    let reference = esc(&intent.reference_no);
    let (status, heading, content) = match intent.status {
        IntentStatus::Reserved => (StatusCode::OK, "Complete your bank transfer", reserved_content(token, intent)),
        IntentStatus::PendingReview => (
            StatusCode::OK,
            "We are checking your transfer",
            "<p>Thank you. We are checking your transfer; your balance is updated as soon as it is confirmed. \
             You can close this page.</p>"
                .to_owned(),
        ),
        IntentStatus::LateArrival => (
            StatusCode::OK,
            "We are checking your transfer",
            "<p>Your transfer arrived after this deposit had expired. We are checking it; \
             your balance is updated if it is accepted.</p>"
                .to_owned(),
        ),
        IntentStatus::Approved => (
            StatusCode::OK,
            "Your deposit was approved",
            format!("<p>{amount} has been credited. You can close this page.</p>"),
        ),
        IntentStatus::Rejected => (
            StatusCode::OK,
            "Your deposit was rejected",
            format!(
                "<p>Your deposit could not be accepted{}. Please contact support and quote the reference number.</p>",
                intent.rejected_reason.as_deref().map(|r| format!(": {}", esc(r))).unwrap_or_default()
            ),
        ),
        // Gone: the link still proves who it was for, but it can no longer be used.
        IntentStatus::AutoCancelled => (
            StatusCode::GONE,
            "This deposit has expired",
            "<p>The time to make this transfer is over. Please start a new deposit. \
             Do not transfer money for this one.</p>"
                .to_owned(),
        ),
    };
    let body = format!(
        "<main><p class=\"muted\">{tenant}</p>\
         <h1 id=\"state\" data-status=\"{status_name}\" aria-live=\"polite\">{heading}</h1>\
         <dl><dt>Amount</dt><dd id=\"amount\">{amount}</dd>\
         <dt>Reference</dt><dd id=\"reference\">{reference}</dd></dl>{content}</main>",
        tenant = esc(&state.config.tenant_name),
        status_name = intent.status.as_str(),
    );
    let script = (intent.status == IntentStatus::Reserved).then_some(COUNTDOWN_SCRIPT);
    let frame_ancestors = state.settings().frame_ancestors.clone();
    render(
        status,
        Page {
            title: heading,
            accent: &state.config.tenant_color,
            style: "",
            body,
            script,
            refresh_secs: None,
            frame_ancestors: &frame_ancestors,
        },
    )
}

/// The account, the countdown and the button of a RESERVED intent.
fn reserved_content(token: &str, intent: &IntentRecord) -> String {
    let expires_ms = intent.expires_at.timestamp_millis();
    let remaining = (intent.expires_at - now()).num_seconds().max(0);
    format!(
        "<p>Transfer <strong>exactly</strong> the amount above to this account and write the reference \
         number in the transfer description.</p>\
         <dl><dt>Account holder</dt><dd id=\"holder\">{holder}</dd>\
         <dt>IBAN</dt><dd id=\"iban\">{iban}</dd>\
         <dt>Time left</dt><dd><span id=\"countdown\" data-expires-at=\"{expires_ms}\" \
         role=\"timer\">{mm:02}:{ss:02}</span></dd></dl>\
         <form method=\"post\" action=\"{token}/confirm\"><button id=\"confirm\" type=\"submit\">I made the payment</button></form>",
        holder = esc(&intent.account.holder),
        iban = esc(&group_for_display(&intent.account.iban)),
        token = esc(token),
        mm = remaining / 60,
        ss = remaining % 60,
    )
}

/// Counts down to `data-expires-at` and reloads at zero to show the expired state.
const COUNTDOWN_SCRIPT: &str = "
(function () {
  var el = document.getElementById('countdown');
  if (!el) return;
  var end = Number(el.getAttribute('data-expires-at'));
  function tick() {
    var left = Math.max(0, Math.ceil((end - Date.now()) / 1000));
    var m = Math.floor(left / 60), s = left % 60;
    el.textContent = (m < 10 ? '0' : '') + m + ':' + (s < 10 ? '0' : '') + s;
    if (left === 0) { setTimeout(function () { location.reload(); }, 1000); return; }
    setTimeout(tick, 250);
  }
  tick();
})();
";

fn invalid_link(state: &AppState) -> Response {
    let body = "<main><h1 id=\"state\" data-status=\"INVALID\">This payment link is not valid</h1>\
                <p>The link is damaged, was not issued by us, or belongs to a deposit that no longer exists. \
                Please start a new deposit from the site you came from.</p></main>"
        .to_owned();
    let frame_ancestors = state.settings().frame_ancestors.clone();
    render(
        StatusCode::NOT_FOUND,
        Page {
            title: "Invalid payment link",
            accent: &state.config.tenant_color,
            style: "",
            body,
            script: None,
            refresh_secs: None,
            frame_ancestors: &frame_ancestors,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_key_and_intact() {
        let key = TokenKey::generate();
        let id = Uuid::now_v7();
        let expires = chrono::Utc::now();
        let token = key.sign(id, expires);
        assert_eq!(key.verify(&token).unwrap().intent_id, id);
        assert!(key.verify(&token).unwrap().exp >= expires.timestamp());
        assert!(TokenKey::generate().verify(&token).is_none());
        let mut forged: Vec<char> = token.chars().collect();
        let at = forged.len() - 5;
        forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
        let forged: String = forged.into_iter().collect();
        assert!(key.verify(&forged).is_none());
        assert!(key.verify("a.b").is_none());
        assert!(key.verify("").is_none());
    }

    #[test]
    fn the_header_is_the_jwt_hs256_header() {
        let decoded = URL_SAFE_NO_PAD.decode(HEADER).unwrap();
        assert_eq!(decoded, br#"{"alg":"HS256","typ":"JWT"}"#);
    }
}
