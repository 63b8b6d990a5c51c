//! `POST /api/deposits` and `POST /api/withdrawals`: the two requests that move money.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use pientegra_shared::api::{self, codes};
use pientegra_shared::ids::HolderName;
use pientegra_shared::wire::DEFAULT_CURRENCY;
use pientegra_shared::{Amount, Iban};
use serde::de::DeserializeOwned;

use super::AppState;
use super::auth::User;
use super::embed;
use super::error::{AppError, ErrorAnswers, RawBody, error_answers};
use super::idempotency::{self, Stored};
use crate::service::{DepositRequest, WithdrawalRequest};
use crate::storage::Reply;

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
        .on(413, &[codes::PAYLOAD_TOO_LARGE])
        .on(422, &[codes::IDEMPOTENCY_KEY_REUSED, codes::PROVIDER_REJECTED])
        .on(429, &[codes::RATE_LIMITED])
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

fn stored<T: serde::Serialize>(status: StatusCode, value: &T) -> Stored {
    Stored { status, body: serde_json::to_string(value).expect("views serialize"), kept: false }
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
    RawBody(body): RawBody,
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
        let page_origin = embed::page_origin(&headers);
        let request = DepositRequest {
            user: &user.0.user,
            label: user.0.label.clone(),
            amount,
            currency,
            key: &key_text,
            page_origin: &page_origin,
        };
        // The deposit and this answer are stored in one commit.
        let (deposit, framing) = state.deposits().create(request, reply).await?;
        Ok(Stored { status: StatusCode::CREATED, body: deposit.reply_body(Some(framing)), kept: true })
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
    RawBody(body): RawBody,
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
        let request = WithdrawalRequest { account: user.id().to_owned(), key: key_text.clone(), amount, iban, holder };
        let record = state.withdrawals().request(request).await?;
        let view = record.view().ok_or_else(|| anyhow::anyhow!("an accepted withdrawal has a view"))?;
        Ok(stored(StatusCode::CREATED, &view))
    })
    .await
}
