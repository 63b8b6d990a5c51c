//! Support lookups: the live Pientegra record beside the local one (`ADMIN_TOKEN`).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::Admin;
use super::error::AppError;
use crate::pientegra::PientegraError;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/intents/{id}", get(intent)).route("/admin/withdrawals/{id}", get(withdrawal))
}

fn remote<T: serde::Serialize>(result: Result<T, PientegraError>) -> Value {
    match result {
        Ok(record) => serde_json::to_value(record).unwrap_or(Value::Null),
        Err(PientegraError::NotFound) => json!({"error": "not_found"}),
        Err(err) => json!({"error": err.kit_code()}),
    }
}

async fn intent(State(state): State<AppState>, _: Admin, Path(id): Path<String>) -> Result<Json<Value>, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::not_found("intent"))?;
    let local = state.storage.deposit(id).await?.map(|d| d.view());
    let pientegra = remote(state.pientegra.get_intent(id).await);
    Ok(Json(json!({ "local": local, "pientegra": pientegra })))
}

async fn withdrawal(State(state): State<AppState>, _: Admin, Path(id): Path<String>) -> Result<Json<Value>, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::not_found("withdrawal"))?;
    let local = state.storage.withdrawal(id).await?.map(|w| {
        json!({
            "localId": w.local_id, "userId": w.user_id, "state": w.state.as_str(), "amount": w.amount,
            "balanceModel": w.balance_model.as_str(), "view": w.view(),
        })
    });
    let pientegra = remote(state.pientegra.get_withdrawal(id).await);
    Ok(Json(json!({ "local": local, "pientegra": pientegra })))
}
