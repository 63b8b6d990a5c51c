//! Support lookups: the live Pientegra record beside the local one (`ADMIN_TOKEN`).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use pientegra_shared::api::{self, codes};
use pientegra_shared::{Amount, wire};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use uuid::Uuid;

use super::AppState;
use super::auth::Admin;
use super::error::{AppError, ErrorAnswers, error_answers};
use crate::pientegra::PientegraError;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/intents/{id}", get(intent)).route("/admin/withdrawals/{id}", get(withdrawal))
}

/// The routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(intent, withdrawal), components(schemas(wire::Intent, wire::Withdrawal)))]
pub(super) struct Api;

error_answers!(
    AdminErrors = ErrorAnswers::default()
        .described(401, [(codes::UNAUTHORIZED, "admin token required".to_owned())])
        .described(404, [(codes::NOT_FOUND, "no such intent".to_owned())])
        .on(500, &[codes::INTERNAL])
);

/// A deposit intent, here and at Pientegra.
#[derive(Serialize, utoipa::ToSchema)]
struct IntentLookup {
    /// This server's record; `null` when it has none.
    local: Option<api::Deposit>,
    /// Pientegra's record, or `{"error": code}` when it could not be read.
    #[schema(schema_with = remote_intent)]
    pientegra: Value,
}

/// A withdrawal, here and at Pientegra.
#[derive(Serialize, utoipa::ToSchema)]
struct WithdrawalLookup {
    /// This server's record; `null` when it has none.
    local: Option<LocalWithdrawal>,
    /// Pientegra's record, or `{"error": code}` when it could not be read.
    #[schema(schema_with = remote_withdrawal)]
    pientegra: Value,
}

/// This server's record of a withdrawal.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LocalWithdrawal {
    local_id: Uuid,
    user_id: String,
    /// `SUBMITTING`, `REFUSED`, or Pientegra's status.
    state: &'static str,
    amount: Amount,
    /// `pre-reserve` or `final-debit`.
    balance_model: &'static str,
    /// The user's view, once Pientegra knows the withdrawal.
    view: Option<api::Withdrawal>,
}

/// Pientegra's record of `schema`, or the code of why it could not be read.
fn remote(schema: &str) -> RefOr<Schema> {
    let error = ObjectBuilder::new()
        .property("error", ObjectBuilder::new().schema_type(Type::String).examples(["not_found"]))
        .required("error");
    OneOfBuilder::new().item(Ref::from_schema_name(schema)).item(error).into()
}

fn remote_intent() -> RefOr<Schema> {
    remote("PientegraIntent")
}

fn remote_withdrawal() -> RefOr<Schema> {
    remote("PientegraWithdrawal")
}

fn read_remote<T: serde::Serialize>(result: Result<T, PientegraError>) -> Value {
    match result {
        Ok(record) => serde_json::to_value(record).unwrap_or(Value::Null),
        Err(PientegraError::NotFound) => json!({"error": "not_found"}),
        Err(err) => json!({"error": err.kit_code()}),
    }
}

/// A deposit intent as this server and Pientegra have it.
#[utoipa::path(
    get, path = "/admin/intents/{id}", operation_id = "admin_intent", tag = "admin",
    security(("adminToken" = [])),
    params(("id" = Uuid, Path, description = "The intent's id")),
    responses((status = 200, description = "Both records", body = IntentLookup), AdminErrors),
)]
async fn intent(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<IntentLookup>, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::not_found("intent"))?;
    let local = state.storage.deposit(id).await?.map(|d| d.view());
    let pientegra = read_remote(state.pientegra.get_intent(id).await);
    Ok(Json(IntentLookup { local, pientegra }))
}

/// A withdrawal as this server and Pientegra have it.
#[utoipa::path(
    get, path = "/admin/withdrawals/{id}", operation_id = "admin_withdrawal", tag = "admin",
    security(("adminToken" = [])),
    params(("id" = Uuid, Path, description = "The withdrawal's Pientegra id (`withdrawalId`)")),
    responses((status = 200, description = "Both records", body = WithdrawalLookup), AdminErrors),
)]
async fn withdrawal(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<WithdrawalLookup>, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::not_found("withdrawal"))?;
    let local = state.storage.withdrawal(id).await?.map(|w| LocalWithdrawal {
        local_id: w.local_id,
        user_id: w.user_id.clone(),
        state: w.state.as_str(),
        amount: w.amount,
        balance_model: w.balance_model.as_str(),
        view: w.view(),
    });
    let pientegra = read_remote(state.pientegra.get_withdrawal(id).await);
    Ok(Json(WithdrawalLookup { local, pientegra }))
}
