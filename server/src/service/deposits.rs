//! Deposits: a Pientegra intent the user pays by bank transfer, recorded
//! with the answer to the request that created it.

use pientegra_shared::Amount;
use pientegra_shared::api::Framing;
use pientegra_shared::ids::{ExternalUserId, IdempotencyKey, UserLabel};
use pientegra_shared::wire::{CreateDepositRequest, DepositCreated};

use super::Records;
use crate::framing::FramingCheck;
use crate::metrics::Metrics;
use crate::pientegra::{PientegraApi, PientegraError};
use crate::settings::Settings;
use crate::storage::{DepositRecord, DepositReply, NewDeposit, Reply};

/// Creates deposits.
pub struct Deposits<'a> {
    pub(super) records: Records<'a>,
    pub(super) pientegra: &'a dyn PientegraApi,
    pub(super) settings: &'a Settings,
    pub(super) framing: &'a FramingCheck,
    pub(super) metrics: &'a Metrics,
}

/// A user's deposit, as asked for.
pub struct DepositRequest<'r> {
    pub user: &'r ExternalUserId,
    pub label: Option<UserLabel>,
    pub amount: Amount,
    pub currency: String,
    /// The request's own `Idempotency-Key`, which Pientegra's is derived from.
    pub key: &'r str,
    /// The origin of the page that asked, which may or may not frame the payment page.
    pub page_origin: &'r str,
}

/// Why no deposit was created.
#[derive(Debug, thiserror::Error)]
pub enum DepositError {
    /// Pientegra refused, or could not be reached.
    #[error(transparent)]
    Provider(#[from] PientegraError),
    /// Pientegra's payment page is not on `DEPOSIT_URL_HOSTS`: the intent stays unused and expires.
    #[error("the payment page address is not on the allow-list")]
    UrlNotAllowed,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Deposits<'_> {
    /// Creates the intent at Pientegra and records it together with `reply`,
    /// the answer to the request, in one commit. Pientegra's key is derived
    /// from the request's, so a retry creates nothing twice. The answer says
    /// what the asking page may do with the payment page.
    pub async fn create(
        &self,
        request: DepositRequest<'_>,
        reply: Reply<'_>,
    ) -> Result<(DepositRecord, Framing), DepositError> {
        let key = super::derived_key("deposit", &format!("{}:{}", request.user.as_str(), request.key));
        let created = self
            .open(
                key,
                &CreateDepositRequest {
                    external_user_id: request.user.clone(),
                    external_user_label: request.label,
                    amount: request.amount,
                    currency: Some(request.currency),
                },
            )
            .await?;
        let framing = self.framing.framing(&created.deposit_url, request.page_origin).await;
        let reply = DepositReply { reply, framing: Some(framing) };
        let deposit = self.records.record_deposit(new_deposit(&created, request.user.as_str()), Some(&reply)).await?;
        Metrics::inc(&self.metrics.deposits_created);
        Ok((deposit, framing))
    }

    /// Asks Pientegra for an intent and checks the page it sends the payer to:
    /// a browser is never handed an address outside the allow-list.
    pub(super) async fn open(
        &self,
        key: IdempotencyKey,
        request: &CreateDepositRequest,
    ) -> Result<DepositCreated, DepositError> {
        let created = self.pientegra.create_deposit(key, request).await?;
        if !url_allowed(&created.deposit_url, &self.settings.deposit_url_hosts) {
            tracing::error!(intent_id = %created.intent_id, "depositUrl host is not in DEPOSIT_URL_HOSTS; refused");
            return Err(DepositError::UrlNotAllowed);
        }
        Ok(created)
    }
}

/// Whether a browser may be sent to `url`: https (http on loopback, as for
/// every URL the server is configured with) on one of the `allowed` hosts.
fn url_allowed(url: &str, allowed: &[String]) -> bool {
    let Ok(url) = url::Url::parse(url) else { return false };
    let host = url.host_str().unwrap_or_default();
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && crate::settings::on_loopback(&url));
    scheme_ok && allowed.iter().any(|allowed| allowed.eq_ignore_ascii_case(host))
}

/// The record of an intent Pientegra created, in the ledger account `account`.
pub(super) fn new_deposit(created: &DepositCreated, account: &str) -> NewDeposit {
    NewDeposit {
        intent_id: created.intent_id,
        user_id: account.to_owned(),
        reference_no: created.reference_no.clone(),
        deposit_url: created.deposit_url.clone(),
        requested_amount: created.requested_amount,
        amount: created.amount,
        currency: created.currency.clone(),
        expires_at: created.expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::url_allowed;

    #[test]
    fn payment_pages_are_https_on_an_allowed_host_or_http_on_this_machine() {
        let allowed: Vec<String> = ["pay.pientegra.com", "127.0.0.2", "localhost", "[::1]"].map(str::to_owned).into();
        for url in ["https://pay.pientegra.com/d/1", "https://PAY.pientegra.com/d/1", "http://127.0.0.2:8080/d/1"] {
            assert!(url_allowed(url, &allowed), "{url}");
        }
        for url in ["http://localhost/d/1", "http://[::1]:9000/d/1"] {
            assert!(url_allowed(url, &allowed), "{url}");
        }
        for url in [
            "http://pay.pientegra.com/d/1",
            "https://evil.example/d/1",
            "https://pay.pientegra.com.evil.example/d/1",
            "javascript:alert(1)",
            "not a url",
        ] {
            assert!(!url_allowed(url, &allowed), "{url}");
        }
    }
}
