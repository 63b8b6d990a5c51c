//! `GET /api/account` and the per-record lookups (the widget's polling fallback).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use pientegra_shared::api::{self, codes};
use uuid::Uuid;

use super::AppState;
use super::auth::User;
use super::error::{AppError, ErrorAnswers, error_answers};

/// How many deposits and withdrawals the account view lists.
const LIST_LIMIT: i64 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/account", get(account))
        .route("/api/deposits/{intent_id}", get(deposit))
        .route("/api/withdrawals/{withdrawal_id}", get(withdrawal))
}

/// The token's user: balance, and the latest deposits and withdrawals.
#[utoipa::path(
    get, path = "/api/account", operation_id = "get_account", tag = "widget",
    security(("widgetToken" = [])),
    responses((status = 200, description = "The account", body = api::Account), AccountErrors),
)]
async fn account(State(state): State<AppState>, user: User) -> Result<Json<api::Account>, AppError> {
    let balance = state.storage.balance(user.id()).await?.view();
    let deposits = state.storage.deposits_of(user.id(), LIST_LIMIT).await?;
    let withdrawals = state.storage.withdrawals_of(user.id(), LIST_LIMIT).await?;
    Ok(Json(api::Account {
        external_user_id: user.id().to_owned(),
        balance,
        deposits: deposits.iter().map(|d| d.view()).collect(),
        withdrawals: withdrawals.iter().filter_map(|w| w.view()).collect(),
    }))
}

/// The routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(account, deposit, withdrawal))]
pub(super) struct Api;

error_answers!(AccountErrors = ErrorAnswers::widget());
error_answers!(LookupErrors = ErrorAnswers::widget().on(404, &[codes::NOT_FOUND]));

fn parse_id(raw: &str, what: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::not_found(what))
}

/// One of the user's deposits; another user's is `not_found`.
#[utoipa::path(
    get, path = "/api/deposits/{intent_id}", operation_id = "get_deposit", tag = "widget",
    security(("widgetToken" = [])),
    params(("intent_id" = Uuid, Path, description = "The deposit's `intentId`")),
    responses((status = 200, description = "The deposit", body = api::Deposit), LookupErrors),
)]
async fn deposit(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Json<api::Deposit>, AppError> {
    let id = parse_id(&id, "deposit")?;
    match state.storage.deposit(id).await? {
        Some(d) if d.user_id == user.id() => Ok(Json(d.view())),
        _ => Err(AppError::not_found("deposit")),
    }
}

/// One of the user's withdrawals; another user's is `not_found`.
#[utoipa::path(
    get, path = "/api/withdrawals/{withdrawal_id}", operation_id = "get_withdrawal", tag = "widget",
    security(("widgetToken" = [])),
    params(("withdrawal_id" = Uuid, Path, description = "The withdrawal's `withdrawalId`")),
    responses((status = 200, description = "The withdrawal", body = api::Withdrawal), LookupErrors),
)]
async fn withdrawal(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Json<api::Withdrawal>, AppError> {
    let id = parse_id(&id, "withdrawal")?;
    match state.storage.withdrawal(id).await?.filter(|w| w.user_id == user.id()).and_then(|w| w.view()) {
        Some(view) => Ok(Json(view)),
        None => Err(AppError::not_found("withdrawal")),
    }
}
