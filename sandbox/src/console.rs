//! `GET /sandbox/console`: the operator's page. Intents, withdrawals and
//! deliveries, newest first, with a button for every legal next step; the
//! buttons call the control endpoints and reload. Refreshes itself.

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use pientegra_shared::Locale;
use pientegra_shared::wire::DeliveryStatus;

use crate::config::format_scale_ppm;
use crate::control::{StateView, intent_action_for, withdrawal_action_for};
use crate::html::{NO_FRAMING, Page, esc, render};
use crate::state::AppState;

/// Seconds between automatic reloads.
const REFRESH_SECS: u32 = 5;

pub async fn page(State(state): State<AppState>) -> Response {
    let view = StateView::of(&state);
    let settings = state.settings().clone();
    let review = settings.auto_approve_ms.map_or("manual".to_owned(), |ms| format!("auto-approve after {ms} ms"));

    let mut intents = String::new();
    for i in &view.intents {
        let w = &i.intent;
        let buttons: String = w
            .status
            .next_steps()
            .iter()
            .map(|&to| {
                button(&format!("/sandbox/intents/{}/{}", w.intent_id, intent_action_for(to)), intent_action_for(to))
            })
            .collect();
        intents.push_str(&format!(
            "<tr><td><code>{ref}</code></td><td>{status}</td><td>{amount}</td><td>{user}</td><td>{created}</td>\
             <td><a href=\"{url}\" target=\"_blank\" rel=\"noopener\">page</a></td><td>{buttons}</td></tr>",
            r#ref = esc(&w.reference_no),
            status = w.status,
            amount = esc(&w.amount.format(Locale::Tr)),
            user = esc(w.external_user_id.as_deref().unwrap_or("")),
            created = w.created_at.map(|t| pientegra_shared::time::format(&t)).unwrap_or_default(),
            url = esc(&i.deposit_url),
        ));
    }

    let mut withdrawals = String::new();
    for v in &view.withdrawals {
        let w = &v.withdrawal;
        let buttons: String = w
            .status
            .next_steps()
            .iter()
            .map(|&to| {
                let action = withdrawal_action_for(to);
                button(&format!("/sandbox/withdrawals/{}/{action}", w.withdrawal_id), action)
            })
            .collect();
        withdrawals.push_str(&format!(
            "<tr><td><code>{ref}</code></td><td>{status}</td><td>{amount}</td><td>{user}</td><td>{iban}<br>{holder}</td>\
             <td>{buttons}</td></tr>",
            r#ref = esc(&w.reference_no),
            status = w.status,
            amount = esc(&w.amount.format(Locale::Tr)),
            user = esc(w.external_user_id.as_deref().unwrap_or("")),
            iban = esc(&pientegra_shared::iban::group_for_display(&v.target_iban)),
            holder = esc(&v.target_holder_name),
        ));
    }

    let mut deliveries = String::new();
    for d in &view.deliveries {
        let e = &d.event;
        let replay = if e.delivery_status == DeliveryStatus::Pending {
            String::new()
        } else {
            button(&format!("/sandbox/events/{}/replay", e.event_id), "replay")
        };
        deliveries.push_str(&format!(
            "<tr><td>{kind}</td><td>{status}</td><td>{attempts}</td><td>{last}</td><td>{next}</td><td>{replay}</td></tr>",
            kind = esc(&e.event_type),
            status = e.delivery_status.as_str(),
            attempts = e.attempts,
            last = esc(&match (e.last_response_status, &e.last_error) {
                (Some(status), _) => format!("HTTP {status}"),
                (None, Some(error)) => error.clone(),
                (None, None) => String::new(),
            }),
            next = d.next_attempt_in_ms.map(|ms| format!("in {ms} ms")).unwrap_or_default(),
        ));
    }

    let body = format!(
        "<main class=\"wide\"><h1>{tenant} — sandbox console</h1>\
         <p class=\"muted\">Review: {review}. Retry scale: {scale}. Webhooks: {hooks} → {url}. \
         Free receiving accounts: {free}. <a href=\"/sandbox/config\">config</a> · <a href=\"/sandbox/state\">state</a></p>\
         <p id=\"error\" role=\"alert\"></p>\
         <h2>Intents</h2><table><tr><th>Reference</th><th>Status</th><th>Amount</th><th>User</th><th>Created</th><th></th><th>Actions</th></tr>{intents}</table>\
         <h2>Withdrawals</h2><table><tr><th>Reference</th><th>Status</th><th>Amount</th><th>User</th><th>Target</th><th>Actions</th></tr>{withdrawals}</table>\
         <h2>Deliveries</h2><table><tr><th>Event</th><th>Status</th><th>Attempts</th><th>Last result</th><th>Next</th><th></th></tr>{deliveries}</table>\
         </main>",
        tenant = esc(&state.config.tenant_name),
        scale = format_scale_ppm(settings.retry_scale),
        hooks = if settings.webhooks_enabled { "on" } else { "paused" },
        url = esc(view.webhook_url.as_deref().unwrap_or("(no URL configured)")),
        free = view.free_accounts,
    );
    render(
        StatusCode::OK,
        Page {
            title: "Sandbox console",
            accent: &state.config.tenant_color,
            style: STYLE,
            body,
            script: Some(SCRIPT),
            refresh_secs: Some(REFRESH_SECS),
            // Its buttons move money: no page may frame it and trick a click.
            frame_ancestors: NO_FRAMING,
        },
    )
}

fn button(path: &str, action: &str) -> String {
    format!(
        "<button type=\"button\" data-post=\"{}\" data-action=\"{}\">{}</button> ",
        esc(path),
        esc(action),
        esc(action)
    )
}

const STYLE: &str = "
main.wide { max-width: 80rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
button { padding: .3rem .6rem; font-size: .85rem; margin: .1rem 0; }
#error { color: #b42318; }
";

/// Posts the clicked button's action; asks for a reason on reject and an
/// optional different amount on approve; reloads to show the result.
const SCRIPT: &str = "
document.addEventListener('click', function (ev) {
  var b = ev.target.closest('button[data-post]');
  if (!b) return;
  var action = b.getAttribute('data-action'), body = {};
  if (action === 'reject') {
    var reason = prompt('Reason for the rejection?', 'Transfer not found');
    if (reason === null) return;
    body.reason = reason;
  } else if (action === 'approve' && b.getAttribute('data-post').indexOf('/intents/') >= 0) {
    var amount = prompt('Transferred amount in minor units (empty: as requested)', '');
    if (amount === null) return;
    if (amount.trim() !== '') body.amount = amount.trim();
  }
  fetch(b.getAttribute('data-post'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    .then(function (r) { return r.ok ? null : r.json().then(function (e) { return e.message || e.error; }); })
    .then(function (err) { if (err) { document.getElementById('error').textContent = err; } else { location.reload(); } });
});
";
