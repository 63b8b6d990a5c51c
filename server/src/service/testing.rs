//! A server's state over a fresh SQLite database and a scripted Pientegra,
//! for the use cases' tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pientegra_shared::Amount;
use pientegra_shared::event::{EventKind, IntentEvent, IntentSnapshot, WebhookEvent};
use pientegra_shared::ids::IdempotencyKey;
use pientegra_shared::status::IntentStatus;
use pientegra_shared::wire::{
    CreateDepositRequest, CreateWithdrawalRequest, DepositCreated, EventRecord, EventsQuery, Intent, ListQuery, Page,
    ReplayAccepted, WebhookConfig, WebhookConfigRequest, Withdrawal, WithdrawalCreated,
};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::pientegra::{BudgetSettings, PientegraApi, PientegraError, RetryPolicy};
use crate::settings::{ConnectionLimits, PgmSettings, Settings};
use crate::state::AppState;
use crate::storage::NewDeposit;

/// A Pientegra that refuses every withdrawal and is unreachable for the rest.
#[derive(Default)]
pub struct Refusing {
    /// Withdrawals it was sent.
    pub withdrawals: AtomicUsize,
}

/// What [`Refusing`] says to a withdrawal.
pub const REFUSAL: &str = "the withdrawal limit of this user is reached";

fn not_scripted<T>() -> Result<T, PientegraError> {
    Err(PientegraError::Unavailable { reason: "not scripted".into() })
}

#[async_trait::async_trait]
impl PientegraApi for Refusing {
    async fn create_deposit(
        &self,
        _: IdempotencyKey,
        _: &CreateDepositRequest,
    ) -> Result<DepositCreated, PientegraError> {
        not_scripted()
    }

    async fn create_withdrawal(
        &self,
        _: IdempotencyKey,
        _: &CreateWithdrawalRequest,
    ) -> Result<WithdrawalCreated, PientegraError> {
        self.withdrawals.fetch_add(1, Ordering::SeqCst);
        Err(PientegraError::Refused { status: 422, code: "withdrawal_limit".into(), message: REFUSAL.into() })
    }

    async fn get_intent(&self, _: Uuid) -> Result<Intent, PientegraError> {
        not_scripted()
    }

    async fn get_withdrawal(&self, _: Uuid) -> Result<Withdrawal, PientegraError> {
        not_scripted()
    }

    async fn list_intents(&self, _: &ListQuery) -> Result<Page<Intent>, PientegraError> {
        not_scripted()
    }

    async fn list_withdrawals(&self, _: &ListQuery) -> Result<Page<Withdrawal>, PientegraError> {
        not_scripted()
    }

    async fn list_events(&self, _: &EventsQuery) -> Result<Page<EventRecord>, PientegraError> {
        not_scripted()
    }

    async fn replay_event(&self, _: Uuid) -> Result<ReplayAccepted, PientegraError> {
        not_scripted()
    }

    async fn set_webhook_config(&self, _: &WebhookConfigRequest) -> Result<WebhookConfig, PientegraError> {
        not_scripted()
    }

    async fn ping(&self) -> Result<(), PientegraError> {
        not_scripted()
    }
}

/// A server's state with the PGM facade on, and what it calls Pientegra with.
pub struct World {
    pub state: AppState,
    pub pientegra: Arc<Refusing>,
    _dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> World {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let settings = Settings {
            api_base: "http://127.0.0.1:9/".parse().expect("a URL"),
            api_key: SecretString::from("test-api-key".to_owned()),
            webhook_secrets: vec![SecretString::from("test-webhook-secret".to_owned())],
            database_url: format!("sqlite://{}", dir.path().join("kit.db").display()).into(),
            widget_token_secrets: vec![SecretString::from("test-widget-token-secret-0123456789".to_owned())],
            widget_token_max_lifetime: std::time::Duration::from_secs(3600),
            allowed_origins: vec![],
            deposit_url_hosts: vec![],
            bind: "127.0.0.1:0".parse().expect("an address"),
            balance_model: crate::ledger::BalanceModel::PreReserve,
            reconcile_interval: None,
            admin_token: None,
            demo: false,
            rate_limit_per_minute: 60,
            pientegra_budget: BudgetSettings { per_minute: 600, burst: 10 },
            pientegra_retry: RetryPolicy::default(),
            static_dir: None,
            widget_dir: None,
            pgm: Some(PgmSettings::new("test-pgm-facade-token-0123456789abcdef", None, None).expect("facade settings")),
            connections: ConnectionLimits::default(),
        };
        let pientegra = Arc::new(Refusing::default());
        let state = crate::app_state(settings, Some(pientegra.clone()), CancellationToken::new())
            .await
            .expect("the server's state");
        World { state, pientegra, _dir: dir }
    }

    /// Records the approved deposit `intent_id` of `amount` into `account`, as its webhook would.
    pub async fn credit(&self, account: &str, intent_id: Uuid, amount: Amount) {
        let records = self.state.records();
        records
            .record_deposit(
                NewDeposit {
                    intent_id,
                    user_id: account.to_owned(),
                    reference_no: "REF-1".into(),
                    deposit_url: "https://pay.example/1".into(),
                    requested_amount: amount,
                    amount,
                    currency: "TRY".into(),
                    expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
                },
                None,
            )
            .await
            .expect("the deposit is recorded");
        let event = WebhookEvent {
            event_id: Uuid::new_v4(),
            occurred_at: chrono::Utc::now(),
            kind: EventKind::Intent {
                event: IntentEvent::Approved,
                intent: IntentSnapshot {
                    id: intent_id,
                    reference_no: "REF-1".into(),
                    external_user_id: crate::ledger::pientegra_user(account).to_owned(),
                    requested_amount: amount,
                    amount,
                    currency: "TRY".into(),
                    status: IntentStatus::Approved,
                    rejected_reason: None,
                },
            },
        };
        records.apply_event(&event, &event.to_body()).await.expect("the approval is applied");
    }
}
