//! The reference deployment as real processes: a sandbox, two or more
//! `pientegra-server` instances on a fresh PostgreSQL schema, and nginx in
//! front from `deploy/nginx/pientegra.conf`; the sandbox delivers its webhooks
//! to nginx.

use chrono::Utc;
use pientegra_sandbox::{Config, Sandbox};
use pientegra_server::token::TokenKey;
use pientegra_shared::ids::ExternalUserId;
use pientegra_testkit::browser;
use pientegra_testkit::nginx::{Nginx, free_port};
use pientegra_testkit::postgres::Schema;
use pientegra_testkit::sse::{SseClient, stream_ticket};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{ServerProcess, TOKEN_SECRET};

/// A running deployment.
pub struct Cluster {
    pub sandbox: Sandbox,
    pub http: reqwest::Client,
    // Declared before the schema: the instances stop before it is dropped.
    instances: Vec<ServerProcess>,
    pub nginx: Nginx,
    pub schema: Schema,
}

impl Cluster {
    /// Starts `instances` servers and nginx; `None` when the machine lacks
    /// PostgreSQL or nginx (a failure when `CI=true`).
    pub async fn start(instances: usize) -> Option<Cluster> {
        Cluster::start_with(instances, &[]).await
    }

    /// Starts `instances` servers in demo mode that also serve the built demo
    /// page and the partner bundle, as `cargo xtask demo` does.
    pub async fn serving_the_demo(instances: usize) -> Option<Cluster> {
        let demo = [
            ("DEMO_MODE", "true".to_owned()),
            ("STATIC_DIR", browser::dist().display().to_string()),
            ("WIDGET_DIR", browser::widget_dist().display().to_string()),
        ];
        Cluster::start_with(instances, &demo).await
    }

    /// Starts `instances` servers with `extra` variables in their environment.
    async fn start_with(instances: usize, extra: &[(&str, String)]) -> Option<Cluster> {
        super::nginx::binary()?;
        let schema = Schema::create().await?;
        let sandbox = Sandbox::spawn(Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            retry_scale_ppm: 1_000,
            rate_limit_per_minute: 100_000,
            ..Config::default()
        })
        .await
        .expect("sandbox starts");
        let mut servers = vec![];
        for _ in 0..instances {
            servers.push(ServerProcess::start_with(free_port(), &schema.url, &sandbox, extra).await);
        }
        let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
        let nginx = Nginx::start(&ports).await?;
        let cluster = Cluster { sandbox, http: reqwest::Client::new(), instances: servers, nginx, schema };
        let response = cluster
            .http
            .put(format!("{}/external/site/webhook-config", cluster.sandbox.api_base()))
            .bearer_auth(cluster.sandbox.api_key())
            .json(&json!({"webhookUrl": format!("{}/webhooks/pientegra", cluster.url()), "rotateSecret": false}))
            .send()
            .await
            .expect("webhook config");
        assert!(response.status().is_success(), "webhook config: {}", response.status());
        Some(cluster)
    }

    /// nginx's URL: what browsers and Pientegra reach.
    pub fn url(&self) -> String {
        self.nginx.url()
    }

    /// Instance `i`'s own URL (bypassing nginx).
    pub fn instance_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.instances[i].port)
    }

    /// Each instance's address as nginx logs it (`$upstream_addr`).
    pub fn upstreams(&self) -> Vec<String> {
        self.instances.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect()
    }

    /// The instance listening at `addr` (`127.0.0.1:PORT`, as nginx logs `$upstream_addr`).
    pub fn instance_at(&self, addr: &str) -> Option<usize> {
        self.instances.iter().position(|s| addr == format!("127.0.0.1:{}", s.port))
    }

    /// A widget token for `user`, as the partner's backend mints it.
    pub fn token(&self, user: &str) -> String {
        let key = TokenKey::new(SecretString::from(TOKEN_SECRET.to_owned()));
        key.mint(&ExternalUserId::parse(user).unwrap(), None, Utc::now(), Utc::now() + chrono::Duration::hours(1))
    }

    /// POSTs JSON through nginx with a bearer token and a fresh Idempotency-Key.
    pub async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url()))
            .bearer_auth(token)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .expect("POST through nginx");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// SIGKILLs instance `i`, then starts it again on the same port.
    pub async fn kill_and_restart(&mut self, i: usize) {
        self.instances[i].kill_and_restart().await;
    }

    /// POSTs a sandbox control action, e.g. `intents/{id}/approve`.
    pub async fn control(&self, action: &str) {
        let response = self
            .http
            .post(format!("{}/sandbox/{action}", self.sandbox.base_url()))
            .json(&json!({}))
            .send()
            .await
            .expect("sandbox control");
        assert!(response.status().is_success(), "sandbox {action}: {}", response.status());
    }

    /// The user's stream as a browser opens it: a ticket, then `?ticket=`, at `base`.
    pub async fn stream(&self, base: &str, token: &str, last_event_id: Option<i64>) -> SseClient {
        let ticket = stream_ticket(base, token).await.expect("stream ticket");
        SseClient::connect_with_ticket(base, &ticket, last_event_id).await.expect("SSE connects")
    }

    /// Which instance nginx sent each webhook to, in order of the access log.
    pub fn webhook_instances(&self) -> Vec<usize> {
        self.nginx
            .access_log()
            .lines()
            .filter(|line| line.contains("POST /webhooks/pientegra "))
            .filter_map(|line| {
                // The format puts `"$upstream_addr"` in the second quoted field;
                // a retried request lists every address tried, the last served.
                let addr = line.split('"').nth(3)?.rsplit(", ").next()?;
                self.instance_at(addr)
            })
            .collect()
    }

    /// Waits until nginx has logged every webhook delivery attempt the sandbox
    /// has finished, with none pending (nginx logs a request after its answer,
    /// which can be after the change reached a stream).
    pub async fn webhooks_logged(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let state = pientegra_testkit::sandbox_state(&self.http, &self.sandbox.base_url()).await;
            let deliveries = state["deliveries"].as_array().cloned().unwrap_or_default();
            let settled = deliveries.iter().all(|d| d["deliveryStatus"] == "DELIVERED");
            let attempts: u64 = deliveries.iter().map(|d| d["attempts"].as_u64().unwrap_or(0)).sum();
            if settled && self.webhook_instances().len() as u64 == attempts {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "nginx's access log never caught up with the deliveries");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
