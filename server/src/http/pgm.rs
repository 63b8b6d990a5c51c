//! The Mia-Platform Payment Gateway Manager facade under `/v3/pientegra`:
//! PGM's external-provider contract (`mia-pgm-facade.md`) over the kit's own
//! deposit and withdrawal paths. Every answer is PGM-shaped:
//! `{"result": "KO", "resultDescription": "..."}` on failure.
//!
//! Status codes: 400 malformed input, 401 bad token, 404 unknown paymentId,
//! 501 subscriptions, 503 Pientegra unreachable or busy (retry the same request);
//! a refusal of a well-formed request (no IBAN for a refund, insufficient
//! funds, Pientegra said no) is a 200 with `KO`, as a declined payment is.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, on, post};
use axum::{Json, Router};
use pientegra_shared::api::codes;
use pientegra_shared::ids::{ExternalUserId, HolderName, UserLabel};
use pientegra_shared::wire::DEFAULT_CURRENCY;
use pientegra_shared::{Amount, Iban};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AppState;
use super::error::{AppError, BODY_TOO_LARGE, error_answers};
use crate::pgm::{PgmStatus, StatusObject};
use crate::service::{
    LookupError, Orders, PayError, PayOutcome, PaymentOrder, Payout, PayoutFault, RefundError, RefundOrder,
};
use crate::settings::Settings;

/// Longest shopTransactionId accepted.
const SHOP_TX_MAX_CHARS: usize = 255;

/// PGM's subscription routes, which Pientegra cannot serve: each answers 501.
const SUBSCRIPTIONS: [(MethodFilter, &str); 6] = [
    (MethodFilter::POST, "/v3/pientegra/subscription/schedule"),
    (MethodFilter::POST, "/v3/pientegra/subscription/start"),
    (MethodFilter::POST, "/v3/pientegra/subscription/pay"),
    (MethodFilter::POST, "/v3/pientegra/subscription/update/{token}"),
    (MethodFilter::GET, "/v3/pientegra/subscription/status/{token}"),
    (MethodFilter::DELETE, "/v3/pientegra/subscription/expire/{token}"),
];

/// The facade's routes; none unless `PGM_FACADE_TOKEN` is set.
pub fn router(settings: &Settings) -> Router<AppState> {
    let Some(pgm) = &settings.pgm else { return Router::new() };
    // Compared as digests, so the comparison is constant-time whatever the lengths.
    let expected: [u8; 32] = Sha256::digest(pgm.token.expose_secret().as_bytes()).into();
    let routes = Router::new()
        .route("/v3/pientegra/pay", post(pay))
        .route("/v3/pientegra/refund", post(refund))
        .route("/v3/pientegra/status", get(status))
        .route("/v3/pientegra/check", get(check))
        .route("/v3/pientegra/callback", get(callback));
    SUBSCRIPTIONS
        .into_iter()
        .fold(routes, |routes, (method, path)| routes.route(path, on(method, not_supported)))
        .method_not_allowed_fallback(|| async { Ko::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .route_layer(middleware::from_fn(move |request: Request, next: Next| async move {
            if bearer_matches(&request, &expected) {
                next.run(request).await
            } else {
                Ko::new(StatusCode::UNAUTHORIZED, "missing or wrong Authorization: Bearer <PGM_FACADE_TOKEN>")
                    .into_response()
            }
        }))
}

/// The routes' part of the OpenAPI document.
pub(super) fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    use utoipa::openapi::Required;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
    let mut doc = Api::openapi();
    for (method, path) in SUBSCRIPTIONS {
        let method = if method == MethodFilter::GET {
            HttpMethod::Get
        } else if method == MethodFilter::DELETE {
            HttpMethod::Delete
        } else {
            HttpMethod::Post
        };
        let mut operation = OperationBuilder::new()
            .tag("pgm")
            .summary(Some("PGM subscriptions: not supported by Pientegra"))
            .operation_id(path.split('/').nth(4).map(|name| format!("pgm_subscription_{name}")))
            .security(utoipa::openapi::security::SecurityRequirement::new("pgmFacadeToken", Vec::<String>::new()))
            .responses(utoipa::openapi::ResponsesBuilder::new().responses_from_into_responses::<SubscriptionAnswers>());
        if path.contains("{token}") {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name("token")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some("PGM's subscription token"))
                    .schema(Some(text("PGM's subscription token"))),
            );
        }
        doc.paths.add_path_operation(path, vec![method], operation);
    }
    doc
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(pay, refund, status, check, callback), components(schemas(PayRequest, RefundRequest)))]
struct Api;

/// Failures in PGM's shape, each status with what it means.
struct KoAnswers(Vec<(u16, &'static str)>);

impl KoAnswers {
    /// A bad token, and the faults of any route: 500, and 503 when Pientegra is out of reach.
    fn common() -> KoAnswers {
        KoAnswers(vec![
            (401, "missing or wrong Authorization: Bearer <PGM_FACADE_TOKEN>"),
            (500, "internal error"),
            (503, PROVIDER_UNAVAILABLE),
        ])
    }

    fn on(mut self, status: u16, description: &'static str) -> KoAnswers {
        self.0.push((status, description));
        self
    }

    fn build(self) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        self.0
            .into_iter()
            .map(|(status, description)| {
                let example = json!({"result": "KO", "resultDescription": description});
                let content = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("PgmAnswer")))
                    .example(Some(example))
                    .build();
                let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
                let response =
                    ResponseBuilder::new().description(format!("{reason}: `KO`")).content("application/json", content);
                (status.to_string(), response.build().into())
            })
            .collect()
    }
}

error_answers!(
    PayAnswers = KoAnswers::common()
        .on(400, "amount must be a positive integer number of minor units (kuruş)")
        .on(409, "shopTransactionId was already used for a payment with another amount or externalUserId")
        .on(413, BODY_TOO_LARGE)
        .on(502, "the payment page address is not on the allow-list")
);
error_answers!(
    RefundAnswers = KoAnswers::common()
        .on(400, "providerData.targetIban must be a valid IBAN")
        .on(404, "no such paymentId")
        .on(409, "another refund of this payment is in progress; retry")
        .on(413, BODY_TOO_LARGE)
);
error_answers!(
    LookupAnswers =
        KoAnswers::common().on(400, "the paymentId query parameter is required").on(404, "no such paymentId")
);
error_answers!(SubscriptionAnswers = KoAnswers::common().on(501, "subscriptions are not supported by Pientegra"));

/// The minor units of a PGM amount: an integer, or the same as a string of digits.
fn pgm_amount() -> utoipa::openapi::schema::OneOfBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(Amount::MIN.minor()))
                .maximum(Some(Amount::MAX.minor())),
        )
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9]+$")))
        .description(Some("Minor units (kuruş), 100 to 100000000: an integer, or the same as a string of digits"))
}

fn text(description: &str) -> utoipa::openapi::schema::ObjectBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new().schema_type(Type::String).description(Some(description))
}

/// `POST /v3/pientegra/pay`'s body.
struct PayRequest;

impl utoipa::PartialSchema for PayRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::ObjectBuilder;
        let provider_data = ObjectBuilder::new()
            .property("externalUserId", text("The shop's id of the customer, 1 to 128 characters"))
            .required("externalUserId")
            .property("externalUserLabel", text("The customer's display name"));
        ObjectBuilder::new()
            .property("amount", pgm_amount())
            .required("amount")
            .property("currency", text("`TRY`").enum_values(Some([DEFAULT_CURRENCY])))
            .required("currency")
            .property(
                "shopTransactionId",
                text("The shop's id of the order: the same id again gets the same payment")
                    .max_length(Some(SHOP_TX_MAX_CHARS)),
            )
            .required("shopTransactionId")
            .property("providerData", provider_data)
            .required("providerData")
            .examples([json!({
                "amount": 150000, "currency": "TRY", "shopTransactionId": "order-1001",
                "providerData": {"externalUserId": "customer-42", "externalUserLabel": "Ayşe Yılmaz"}
            })])
            .into()
    }
}

impl utoipa::ToSchema for PayRequest {}

/// `POST /v3/pientegra/refund`'s body.
struct RefundRequest;

impl utoipa::PartialSchema for RefundRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat};
        let provider_data = ObjectBuilder::new()
            .property("targetIban", text("The customer's IBAN, where the refund is paid out"))
            .property("targetHolderName", text("The IBAN's account holder"))
            .description(Some(
                "Pientegra cannot reverse a bank transfer: a refund is paid out to the customer's account, so \
                 both fields are needed (without them the answer is `KO`)",
            ));
        ObjectBuilder::new()
            .property(
                "paymentId",
                text("The payment to refund").format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            )
            .required("paymentId")
            .property("amount", pgm_amount().description(Some("Minor units to refund; all that is left when absent")))
            .property("currency", text("`TRY`").enum_values(Some([DEFAULT_CURRENCY])))
            .property("providerData", provider_data)
            .examples([json!({
                "paymentId": "0192f1c4-8b7e-7c3a-9f1e-2b7d8c9a0e11", "amount": 50000, "currency": "TRY",
                "providerData": {"targetIban": "TR330006100519786457841326", "targetHolderName": "Ayşe Yılmaz"}
            })])
            .into()
    }
}

impl utoipa::ToSchema for RefundRequest {}

async fn not_supported() -> Ko {
    Ko::new(StatusCode::NOT_IMPLEMENTED, "subscriptions are not supported by Pientegra")
}

fn bearer_matches(request: &Request, expected: &[u8; 32]) -> bool {
    let Some(token) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let got: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    got.ct_eq(expected).into()
}

/// A PGM-shaped failure: `{"result": "KO", "resultDescription": "..."}`.
#[derive(Debug)]
struct Ko {
    status: StatusCode,
    description: String,
    /// Seconds, for a 503 PGM should retry.
    retry_after: Option<u64>,
}

/// What a 503 says when Pientegra could not be reached.
const PROVIDER_UNAVAILABLE: &str = "the payment provider did not answer; retry the same request";

impl From<BytesRejection> for Ko {
    /// The kit's answer to an unreadable body (413 or 400), in PGM's shape.
    fn from(rejection: BytesRejection) -> Ko {
        let err = AppError::from(rejection);
        Ko::new(err.status, err.message)
    }
}

impl Ko {
    fn new(status: StatusCode, description: impl Into<String>) -> Ko {
        Ko { status, description: description.into(), retry_after: None }
    }

    fn bad_request(description: impl Into<String>) -> Ko {
        Ko::new(StatusCode::BAD_REQUEST, description)
    }

    /// A refusal of a well-formed request.
    fn refused(description: impl Into<String>) -> Ko {
        Ko::new(StatusCode::OK, description)
    }

    fn unknown_payment() -> Ko {
        Ko::new(StatusCode::NOT_FOUND, "no such paymentId")
    }
}

impl IntoResponse for Ko {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(Answer::new(PgmResult::Ko, self.description, None))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The outcome PGM reads from `result`.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum PgmResult {
    Ok,
    Ko,
    Pending,
    RedirectToUrl,
}

/// A PGM answer: `{"result", "resultDescription", ...}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PgmAnswer)]
struct Answer {
    result: PgmResult,
    /// What happened, in English.
    result_description: String,
    /// The facade's id of the payment or refund (its Pientegra intent or withdrawal id).
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_id: Option<Uuid>,
    /// With `REDIRECT_TO_URL`: Pientegra's page where the customer pays by bank transfer.
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_to_url: Option<String>,
    /// The same page, for mobile.
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_to_url_mobile: Option<String>,
}

impl Answer {
    fn new(result: PgmResult, description: impl Into<String>, payment_id: Option<Uuid>) -> Answer {
        Answer {
            result,
            result_description: description.into(),
            payment_id,
            redirect_to_url: None,
            redirect_to_url_mobile: None,
        }
    }
}

impl From<anyhow::Error> for Ko {
    fn from(err: anyhow::Error) -> Ko {
        AppError::from(err).into()
    }
}

impl From<AppError> for Ko {
    /// A 4xx (a refusal) becomes a KO result with the kit's message; a 5xx
    /// keeps its status and `Retry-After` so PGM retries, said in PGM's terms
    /// (it sends no `Idempotency-Key`: the same request is the retry).
    fn from(err: AppError) -> Ko {
        if !err.status.is_server_error() {
            return Ko::refused(err.message);
        }
        let description = match err.code {
            codes::PROVIDER_BUSY => "the payment provider is busy; retry the same request",
            codes::PROVIDER_UNAVAILABLE => PROVIDER_UNAVAILABLE,
            _ => "internal error",
        };
        Ko { retry_after: err.retry_after, ..Ko::new(err.status, description) }
    }
}

impl From<PayError> for Ko {
    fn from(err: PayError) -> Ko {
        match err {
            PayError::Reused | PayError::RecordedElsewhere => Ko::new(StatusCode::CONFLICT, err.to_string()),
            PayError::Deposit(err) => AppError::from(err).into(),
            PayError::Internal(err) => err.into(),
        }
    }
}

impl From<RefundError> for Ko {
    fn from(err: RefundError) -> Ko {
        match err {
            RefundError::UnknownPayment => Ko::unknown_payment(),
            RefundError::NotAPayment | RefundError::Payout(PayoutFault::Malformed(_)) => {
                Ko::bad_request(err.to_string())
            }
            RefundError::InProgress => Ko::new(StatusCode::CONFLICT, err.to_string()),
            RefundError::Payout(PayoutFault::Missing)
            | RefundError::NotAccepted { .. }
            | RefundError::ExceedsLeft { .. }
            | RefundError::InsufficientFunds { .. } => Ko::refused(err.to_string()),
            RefundError::Withdrawal(err) => AppError::from(err).into(),
            RefundError::Internal(err) => err.into(),
        }
    }
}

impl From<LookupError> for Ko {
    fn from(err: LookupError) -> Ko {
        match err {
            LookupError::UnknownPayment => Ko::unknown_payment(),
            LookupError::Internal(err) => err.into(),
        }
    }
}

fn orders(state: &AppState) -> Result<Orders<'_>, Ko> {
    state.orders().ok_or_else(|| anyhow::anyhow!("PGM routes without a facade").into())
}

// ---- reading PGM bodies ------------------------------------------------------------

fn parse_json(body: &[u8]) -> Result<Value, Ko> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Ko::bad_request(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Ko::bad_request("the body must be a JSON object"));
    }
    Ok(value)
}

/// An optional string field; present but not a string is an error.
fn opt_str<'a>(object: &'a Value, path: &str, name: &str) -> Result<Option<&'a str>, Ko> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(_) => Err(Ko::bad_request(format!("{path}{name} must be a string"))),
    }
}

fn req_str<'a>(object: &'a Value, name: &str) -> Result<&'a str, Ko> {
    opt_str(object, "", name)?.ok_or_else(|| Ko::bad_request(format!("{name} is required")))
}

/// `amount`: an integer number of minor units (kuruş), 100 to 100000000.
fn amount(object: &Value) -> Result<Option<Amount>, Ko> {
    let minor = match object.get("amount") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        // Tolerated: the same integer as a string of digits.
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Some(_) => None,
    }
    .ok_or_else(|| Ko::bad_request("amount must be a positive integer number of minor units (kuruş)"))?;
    Amount::from_minor(minor).check_range().map(Some).map_err(|e| {
        Ko::bad_request(format!(
            "amount {e}: it must be from {} to {} minor units",
            Amount::MIN.minor(),
            Amount::MAX.minor()
        ))
    })
}

fn currency(object: &Value) -> Result<Option<String>, Ko> {
    match opt_str(object, "", "currency")? {
        None => Ok(None),
        Some(c) if c.eq_ignore_ascii_case(DEFAULT_CURRENCY) => Ok(Some(DEFAULT_CURRENCY.to_owned())),
        Some(other) => Err(Ko::bad_request(format!("currency {other} is not supported by Pientegra; use TRY"))),
    }
}

/// The `providerData` object (absent reads as empty).
fn provider_data(object: &Value) -> Result<Value, Ko> {
    match object.get("providerData") {
        None | Some(Value::Null) => Ok(json!({})),
        Some(data @ Value::Object(_)) => Ok(data.clone()),
        Some(_) => Err(Ko::bad_request("providerData must be an object")),
    }
}

fn payment_id_param(query: Option<&str>) -> Result<Uuid, Ko> {
    let raw = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "paymentId")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Ko::bad_request("the paymentId query parameter is required"))?;
    // Not a UUID: it cannot be one of ours.
    Uuid::parse_str(raw.trim()).map_err(|_| Ko::unknown_payment())
}

// ---- POST /pay ---------------------------------------------------------------------

/// Starts a payment.
///
/// A payment: a Pientegra deposit intent for the order, paid by the customer
/// on the page of `redirectToUrl`. The same `shopTransactionId` again gets
/// the same payment, never a second intent. A refusal of a well-formed
/// request is a 200 with `KO`.
#[utoipa::path(
    post, path = "/v3/pientegra/pay", operation_id = "pgm_pay", tag = "pgm",
    security(("pgmFacadeToken" = [])),
    request_body = PayRequest,
    responses((status = 200, description = "`REDIRECT_TO_URL`, `OK` (already paid) or `KO`", body = Answer), PayAnswers),
)]
async fn pay(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Json<Answer>, Ko> {
    let orders = orders(&state)?;
    let body = parse_json(&body?)?;
    let amount = amount(&body)?.ok_or_else(|| Ko::bad_request("amount is required"))?;
    let currency = currency(&body)?.ok_or_else(|| Ko::bad_request("currency is required (TRY)"))?;
    let shop_tx = req_str(&body, "shopTransactionId")?;
    if shop_tx.chars().count() > SHOP_TX_MAX_CHARS || shop_tx.chars().any(char::is_control) {
        return Err(Ko::bad_request(format!(
            "shopTransactionId must be at most {SHOP_TX_MAX_CHARS} printable characters"
        )));
    }
    let data = provider_data(&body)?;
    let user = opt_str(&data, "providerData.", "externalUserId")?
        .ok_or_else(|| Ko::bad_request("providerData.externalUserId is required (the shop's id of the customer)"))?;
    let customer =
        ExternalUserId::parse(user).map_err(|e| Ko::bad_request(format!("providerData.externalUserId {e}")))?;
    let label = opt_str(&data, "providerData.", "externalUserLabel")?
        .map(UserLabel::parse)
        .transpose()
        .map_err(|e| Ko::bad_request(format!("providerData.externalUserLabel {e}")))?;
    let order = PaymentOrder { shop_transaction_id: shop_tx, customer, label, amount, currency };
    Ok(Json(match orders.pay(order).await? {
        PayOutcome::Redirect { payment_id, deposit_url, reference_no } => {
            let description =
                format!("the customer pays by bank transfer on Pientegra's page (reference {reference_no})");
            Answer {
                redirect_to_url: Some(deposit_url.clone()),
                redirect_to_url_mobile: Some(deposit_url),
                ..Answer::new(PgmResult::RedirectToUrl, description, Some(payment_id))
            }
        }
        PayOutcome::Paid { payment_id } => {
            Answer::new(PgmResult::Ok, "this shopTransactionId is already paid", Some(payment_id))
        }
        PayOutcome::Ended { payment_id, status } => Answer::new(
            PgmResult::Ko,
            format!("this shopTransactionId's payment ended {}", status.as_str()),
            Some(payment_id),
        ),
    }))
}

// ---- POST /refund ------------------------------------------------------------------

/// Refunds a payment.
///
/// A refund of an accepted payment, paid out as a Pientegra withdrawal to the
/// customer's IBAN, at most what is left of the payment.
#[utoipa::path(
    post, path = "/v3/pientegra/refund", operation_id = "pgm_refund", tag = "pgm",
    security(("pgmFacadeToken" = [])),
    request_body = RefundRequest,
    responses((status = 200, description = "`OK`, `PENDING` (awaiting review) or `KO`", body = Answer), RefundAnswers),
)]
async fn refund(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Json<Answer>, Ko> {
    let orders = orders(&state)?;
    let body = parse_json(&body?)?;
    let payment_id = req_str(&body, "paymentId")?;
    let payment_id = Uuid::parse_str(payment_id).map_err(|_| Ko::unknown_payment())?;
    let amount = amount(&body)?;
    currency(&body)?;
    let payout = payout(&provider_data(&body)?);
    let refund = orders.refund(RefundOrder { payment_id, amount, payout }).await?;
    let (withdrawal_id, record) = (refund.withdrawal_id, &refund.withdrawal);
    let reference = record.reference_no.clone().unwrap_or_default();
    let (result, description) = match refund.status {
        PgmStatus::Pending => (
            PgmResult::Pending,
            format!("refund paid out as Pientegra withdrawal {withdrawal_id} (reference {reference}); awaiting review"),
        ),
        PgmStatus::Accepted => {
            (PgmResult::Ok, format!("refund sent as Pientegra withdrawal {withdrawal_id} (reference {reference})"))
        }
        PgmStatus::Failed => (
            PgmResult::Ko,
            format!(
                "refund withdrawal {withdrawal_id} ended {}: {}",
                record.state.as_str(),
                record.rejected_reason.as_deref().unwrap_or("no reason given")
            ),
        ),
    };
    Ok(Json(Answer::new(result, description, Some(refund.refund_id))))
}

/// The customer's account in `providerData`, or what is wrong with it.
fn payout(data: &Value) -> Result<Payout, PayoutFault> {
    let field = |name| opt_str(data, "providerData.", name).map_err(|ko| PayoutFault::Malformed(ko.description));
    let (Some(iban), Some(holder)) = (field("targetIban")?, field("targetHolderName")?) else {
        return Err(PayoutFault::Missing);
    };
    let iban = Iban::parse(iban).map_err(|e| PayoutFault::Malformed(format!("providerData.targetIban {e}")))?;
    let holder =
        HolderName::parse(holder).map_err(|e| PayoutFault::Malformed(format!("providerData.targetHolderName {e}")))?;
    Ok(Payout { iban, holder })
}

// ---- GET /status, /check, /callback ------------------------------------------------

async fn lookup(state: &AppState, query: Option<&str>) -> Result<StatusObject, Ko> {
    let orders = orders(state)?;
    Ok(orders.status(payment_id_param(query)?).await?)
}

/// The status of a payment or refund.
#[utoipa::path(
    get, path = "/v3/pientegra/status", operation_id = "pgm_status", tag = "pgm",
    security(("pgmFacadeToken" = [])),
    params(("paymentId" = Uuid, Query, description = "The payment's or refund's `paymentId`")),
    responses((status = 200, description = "The status", body = StatusObject), LookupAnswers),
)]
async fn status(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<StatusObject>, Ko> {
    lookup(&state, query.as_deref()).await.map(Json)
}

/// As `/status`, and the same object is queued for the shop's callback URL.
#[utoipa::path(
    get, path = "/v3/pientegra/check", operation_id = "pgm_check", tag = "pgm",
    security(("pgmFacadeToken" = [])),
    params(("paymentId" = Uuid, Query, description = "The payment's or refund's `paymentId`")),
    responses((status = 200, description = "The status, also sent to the shop", body = StatusObject), LookupAnswers),
)]
async fn check(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<StatusObject>, Ko> {
    let orders = orders(&state)?;
    Ok(Json(orders.check(payment_id_param(query.as_deref())?).await?))
}

/// A provider callback relayed by PGM.
///
/// PGM relays a provider callback: acknowledged with the current status. The
/// facade's state only moves on Pientegra's signed webhooks, never from here.
#[utoipa::path(
    get, path = "/v3/pientegra/callback", operation_id = "pgm_callback", tag = "pgm",
    security(("pgmFacadeToken" = [])),
    params(("paymentId" = Uuid, Query, description = "The payment's or refund's `paymentId`")),
    responses((status = 200, description = "The current status", body = StatusObject), LookupAnswers),
)]
async fn callback(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<StatusObject>, Ko> {
    lookup(&state, query.as_deref()).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_integer_minor_units_in_range() {
        assert_eq!(amount(&json!({"amount": 150000})).unwrap(), Some(Amount::from_minor(150_000)));
        assert_eq!(amount(&json!({"amount": "150000"})).unwrap(), Some(Amount::from_minor(150_000)));
        assert_eq!(amount(&json!({})).unwrap(), None);
        for bad in [json!(99), json!(100_000_001), json!(10.5), json!(-5), json!("1,5"), json!(true)] {
            let err = amount(&json!({ "amount": bad })).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn only_try_is_accepted() {
        assert_eq!(currency(&json!({"currency": "TRY"})).unwrap().as_deref(), Some("TRY"));
        assert_eq!(currency(&json!({"currency": "EUR"})).unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_payment_id_parameter_is_required_and_must_be_ours() {
        assert_eq!(payment_id_param(None).unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(payment_id_param(Some("paymentId=nope")).unwrap_err().status, StatusCode::NOT_FOUND);
        let id = Uuid::new_v4();
        assert_eq!(payment_id_param(Some(&format!("x=1&paymentId={id}"))).unwrap(), id);
    }
}
