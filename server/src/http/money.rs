//! `POST /api/deposits` and `POST /api/withdrawals`: the two requests that move money.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use pientegra_shared::api::{self, codes};
use pientegra_shared::ids::{ExternalUserId, HolderName, IdempotencyKey};
use pientegra_shared::wire::{CreateDepositRequest, CreateWithdrawalRequest, DEFAULT_CURRENCY};
use pientegra_shared::{Amount, Iban};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::AppState;
use super::auth::User;
use super::embed;
use super::error::{AppError, ErrorAnswers, error_answers};
use super::idempotency::{self, Stored};
use crate::metrics::Metrics;
use crate::storage::{DepositReply, NewDeposit, NewWithdrawal, Reply, WithdrawalRecord, WithdrawalState};

/// Namespace of the Pientegra idempotency keys we derive, so a retry of ours
/// (after a crash, too) always sends Pientegra the same key.
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_3c2e_5d4a_4e8f_9a7b_0c1d_2e3f_4a5b);

pub fn router() -> Router<AppState> {
    Router::new().route("/api/deposits", post(create_deposit)).route("/api/withdrawals", post(create_withdrawal))
}

/// The routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create_deposit, create_withdrawal))]
pub(super) struct Api;

/// What both POSTs refuse alike: the token, the key, the rate, Pientegra's faults.
fn money_errors() -> ErrorAnswers {
    ErrorAnswers::widget()
        .on(400, &[codes::VALIDATION_FAILED, codes::AMOUNT_BELOW_MIN, codes::AMOUNT_ABOVE_MAX])
        .on(400, &[codes::MISSING_IDEMPOTENCY_KEY])
        .on(409, &[codes::IDEMPOTENCY_KEY_IN_FLIGHT])
        .on(422, &[codes::IDEMPOTENCY_KEY_REUSED, codes::PROVIDER_REJECTED])
        .on(429, &[codes::RATE_LIMITED])
        .on(502, &[codes::NOT_FOUND])
        .on(503, &[codes::PROVIDER_UNAVAILABLE, codes::PROVIDER_BUSY])
}

error_answers!(
    DepositErrors = money_errors().on(400, &[codes::UNSUPPORTED_CURRENCY]).on(502, &[codes::DEPOSIT_URL_NOT_ALLOWED])
);
error_answers!(WithdrawalErrors = money_errors().on(400, &[codes::INVALID_IBAN]).on(409, &[codes::INSUFFICIENT_FUNDS]));

/// Parses a JSON body, naming what is wrong in a 400.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<(T, serde_json::Value), AppError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| AppError::validation(format!("the body is not valid JSON: {e}")))?;
    let parsed =
        serde_json::from_value(value.clone()).map_err(|e| AppError::validation(format!("invalid body: {e}")))?;
    Ok((parsed, value))
}

fn checked_amount(amount: Amount) -> Result<Amount, AppError> {
    amount.check_range().map_err(|e| AppError::bad_request(e.code(), format!("{e} (1.00 to 1,000,000.00 TRY)")))
}

fn checked_currency(currency: Option<&str>) -> Result<String, AppError> {
    match currency {
        None | Some(DEFAULT_CURRENCY) => Ok(DEFAULT_CURRENCY.to_owned()),
        Some(other) => {
            Err(AppError::bad_request(codes::UNSUPPORTED_CURRENCY, format!("{other} is not supported; use TRY")))
        }
    }
}

fn rate_limit(state: &AppState, user: &User) -> Result<(), AppError> {
    state.limiter.check(user.id()).map_err(|wait| {
        AppError::new(StatusCode::TOO_MANY_REQUESTS, codes::RATE_LIMITED, "too many requests; slow down")
            .retry_after(wait)
    })
}

fn derived_key(kind: &str, scope: &str) -> IdempotencyKey {
    IdempotencyKey::from_uuid(Uuid::new_v5(&KEY_NAMESPACE, format!("{kind}:{scope}").as_bytes()))
}

fn stored<T: serde::Serialize>(status: StatusCode, value: &T) -> Stored {
    Stored { status, body: serde_json::to_string(value).expect("views serialize"), kept: false }
}

/// Whether the browser may be sent to `url`.
pub(crate) fn deposit_url_allowed(state: &AppState, url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else { return false };
    let host = url.host_str().unwrap_or_default();
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    scheme_ok && state.settings.deposit_url_hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(host))
}

/// Creates a deposit.
///
/// A deposit intent at Pientegra for the token's user: the answer's
/// `depositUrl` is the page where the user pays by bank transfer. Outcomes
/// follow on the event stream (`deposit.updated`, `balance.updated`).
#[utoipa::path(
    post, path = "/api/deposits", operation_id = "create_deposit", tag = "widget",
    security(("widgetToken" = [])),
    params(("Idempotency-Key" = Uuid, Header, description = "A UUID made once per operation and sent again with every retry of it")),
    request_body = api::CreateDeposit,
    responses(
        (status = 201, description = "The deposit, with `framing` for the page that asked", body = api::Deposit,
            headers(("Idempotency-Replayed" = bool, description = "`true` when this is the stored answer of an earlier request with the same key"))),
        DepositErrors,
    ),
)]
async fn create_deposit(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let key = idempotency::key(&headers)?;
    let (request, raw): (api::CreateDeposit, _) = parse_body(&body)?;
    let amount = checked_amount(request.amount)?;
    let currency = checked_currency(request.currency.as_deref())?;
    rate_limit(&state, &user)?;
    let key_text = key.to_string();
    let scope = crate::storage::IdempotencyScope { user_id: user.id(), route: "deposits", key: &key_text };
    let fingerprint = idempotency::fingerprint(&raw);
    let reply = Reply { scope: &scope, request_hash: &fingerprint, status: StatusCode::CREATED.as_u16() };
    idempotency::run(&state, &scope, &fingerprint, || async {
        let created = state
            .pientegra
            .create_deposit(
                derived_key("deposit", &format!("{}:{key_text}", user.id())),
                &CreateDepositRequest {
                    external_user_id: user.0.user.clone(),
                    external_user_label: user.0.label.clone(),
                    amount,
                    currency: Some(currency),
                },
            )
            .await
            .map_err(|e| AppError::from_provider(&e))?;
        if !deposit_url_allowed(&state, &created.deposit_url) {
            // Never hand the browser a URL outside the allow-list; the intent stays unused and expires.
            tracing::error!(intent_id = %created.intent_id, "depositUrl host is not in DEPOSIT_URL_HOSTS; refused");
            return Err(AppError::new(
                StatusCode::BAD_GATEWAY,
                codes::DEPOSIT_URL_NOT_ALLOWED,
                "the payment page address is not on the allow-list",
            ));
        }
        let framing = state.framing.framing(&created.deposit_url, &embed::page_origin(&headers)).await;
        // The deposit and this answer are stored in one commit.
        let reply = DepositReply { reply, framing: Some(framing) };
        let changed = state
            .storage
            .record_deposit(
                NewDeposit {
                    intent_id: created.intent_id,
                    user_id: user.id().to_owned(),
                    reference_no: created.reference_no,
                    deposit_url: created.deposit_url,
                    requested_amount: created.requested_amount,
                    amount: created.amount,
                    currency: created.currency,
                    expires_at: created.expires_at,
                },
                Some(&reply),
            )
            .await?;
        state.hub.notify(&changed.touched);
        Metrics::inc(&state.metrics.deposits_created);
        Ok(Stored { status: StatusCode::CREATED, body: changed.value.reply_body(Some(framing)), kept: true })
    })
    .await
}

/// Creates a withdrawal.
///
/// Reserves the amount from the user's balance and sends the withdrawal to
/// Pientegra, which pays it out to the IBAN after review.
#[utoipa::path(
    post, path = "/api/withdrawals", operation_id = "create_withdrawal", tag = "widget",
    security(("widgetToken" = [])),
    params(("Idempotency-Key" = Uuid, Header, description = "A UUID made once per operation and sent again with every retry of it")),
    request_body = api::CreateWithdrawal,
    responses(
        (status = 201, description = "The withdrawal", body = api::Withdrawal,
            headers(("Idempotency-Replayed" = bool, description = "`true` when this is the stored answer of an earlier request with the same key"))),
        WithdrawalErrors,
    ),
)]
async fn create_withdrawal(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let key = idempotency::key(&headers)?;
    let (request, raw): (api::CreateWithdrawal, _) = parse_body(&body)?;
    let amount = checked_amount(request.amount)?;
    let iban = Iban::parse(&request.iban).map_err(|e| AppError::bad_request(codes::INVALID_IBAN, e.to_string()))?;
    let holder =
        HolderName::parse(&request.holder_name).map_err(|e| AppError::validation(format!("holderName {e}")))?;
    rate_limit(&state, &user)?;
    let key_text = key.to_string();
    let scope = crate::storage::IdempotencyScope { user_id: user.id(), route: "withdrawals", key: &key_text };
    idempotency::run(&state, &scope, &idempotency::fingerprint(&raw), || async {
        let reserved = state
            .storage
            .reserve_withdrawal(NewWithdrawal {
                user_id: user.id().to_owned(),
                idempotency_key: key_text.clone(),
                amount,
                currency: DEFAULT_CURRENCY.to_owned(),
                iban: iban.as_str().to_owned(),
                holder_name: holder.as_str().to_owned(),
                balance_model: state.settings.balance_model,
            })
            .await?
            .map_err(|short| {
                AppError::new(
                    StatusCode::CONFLICT,
                    codes::INSUFFICIENT_FUNDS,
                    format!("insufficient funds: {} available", short.available.format(pientegra_shared::Locale::En)),
                )
            })?;
        state.hub.notify(&reserved.touched);
        let record = submit_withdrawal(&state, reserved.value).await?;
        let view = record.view().ok_or_else(|| anyhow::anyhow!("an accepted withdrawal has a view"))?;
        Ok(stored(StatusCode::CREATED, &view))
    })
    .await
}

/// Sends a reserved withdrawal to Pientegra (again, if its first outcome was
/// unknown) with the key derived from its local id, and records the answer.
pub(crate) async fn submit_withdrawal(
    state: &AppState,
    record: WithdrawalRecord,
) -> Result<WithdrawalRecord, AppError> {
    match record.state {
        WithdrawalState::Known(_) => return Ok(record),
        WithdrawalState::Refused => {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::PROVIDER_REJECTED,
                record.rejected_reason.unwrap_or_else(|| "the payment provider refused this withdrawal".into()),
            ));
        }
        WithdrawalState::Submitting => {}
    }
    let request = CreateWithdrawalRequest {
        // A PGM refund draws on its order's account; Pientegra knows it by the customer.
        external_user_id: ExternalUserId::parse(crate::ledger::pientegra_user(&record.user_id))
            .map_err(|e| anyhow::anyhow!("stored user id: {e}"))?,
        external_user_label: None,
        amount: record.amount,
        currency: Some(record.currency.clone()),
        target_iban: Iban::parse(&record.iban).map_err(|e| anyhow::anyhow!("stored IBAN: {e}"))?,
        target_holder_name: HolderName::parse(&record.holder_name)
            .map_err(|e| anyhow::anyhow!("stored holder: {e}"))?,
    };
    match state.pientegra.create_withdrawal(derived_key("withdrawal", &record.local_id.to_string()), &request).await {
        Ok(created) => {
            let changed = state.storage.withdrawal_accepted(record.local_id, &created).await?;
            state.hub.notify(&changed.touched);
            Metrics::inc(&state.metrics.withdrawals_created);
            Ok(changed.value)
        }
        Err(err) if err.is_definite_refusal() => {
            let answer = AppError::from_provider(&err);
            let changed = state.storage.withdrawal_refused(record.local_id, &answer.message).await?;
            state.hub.notify(&changed.touched);
            Err(answer)
        }
        // Unknown outcome: the reservation stays; a retry with the same key, or the
        // background resolver, submits again with the same Pientegra key.
        Err(err) => Err(AppError::from_provider(&err)),
    }
}
