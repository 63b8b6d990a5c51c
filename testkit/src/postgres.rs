//! A fresh schema per test on the PostgreSQL of `PIENTEGRA_TEST_POSTGRES_URL`,
//! so tests running at once never see each other's rows (nor migrations
//! table). Its sessions carry the schema's name as `application_name`, so a
//! test can find and terminate exactly its servers' connections.

use sqlx::Connection;

/// The variable naming the PostgreSQL server the tests may use (trust auth is fine).
pub const POSTGRES_URL_VAR: &str = "PIENTEGRA_TEST_POSTGRES_URL";
/// Every test schema's prefix: each creation sweeps the stale ones.
pub const SCHEMA_PREFIX: &str = "pientegra_test_";
/// Schemas older than this are leftovers of killed test runs.
const STALE_SCHEMA_SECS: i64 = 3_600;

/// A schema of its own, dropped with this value.
pub struct Schema {
    admin_url: String,
    /// The schema's name, also the servers' `application_name`.
    pub name: String,
    /// The servers' `DATABASE_URL`: the admin URL with this schema as `search_path`.
    pub url: String,
}

impl Schema {
    /// A fresh schema on the server of `PIENTEGRA_TEST_POSTGRES_URL`. Without
    /// the variable the test is skipped (`None`, with a line saying so), unless
    /// `CI=true`, where a missing database is a failure.
    pub async fn create() -> Option<Schema> {
        let Some(admin_url) = std::env::var(POSTGRES_URL_VAR).ok().filter(|u| !u.trim().is_empty()) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{POSTGRES_URL_VAR} must be set when CI=true: the PostgreSQL tests cannot run"
            );
            eprintln!("skipped: {POSTGRES_URL_VAR} unset");
            return None;
        };
        Some(Schema::create_at(&admin_url).await)
    }

    /// A fresh schema on the server of `admin_url`; sweeps the schemas killed runs left behind.
    async fn create_at(admin_url: &str) -> Schema {
        let now = chrono::Utc::now().timestamp();
        let name = format!("{SCHEMA_PREFIX}{now}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin_url).await.expect("connecting to the test PostgreSQL");
        sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut conn).await.expect("creating a test schema");
        // Best effort, and never waiting on a lock a running test holds.
        let _ = sqlx::query("SET lock_timeout = '1s'").execute(&mut conn).await;
        let existing: Vec<String> =
            sqlx::query_scalar("SELECT nspname::TEXT FROM pg_namespace WHERE starts_with(nspname, $1)")
                .bind(SCHEMA_PREFIX)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
        for old in existing {
            let created = old.strip_prefix(SCHEMA_PREFIX).and_then(|rest| rest.split('_').next()?.parse::<i64>().ok());
            if created.is_some_and(|t| now - t > STALE_SCHEMA_SECS) {
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {old} CASCADE")).execute(&mut conn).await;
            }
        }
        let _ = conn.close().await;
        let mut url: url::Url = admin_url.parse().expect("PIENTEGRA_TEST_POSTGRES_URL is a URL");
        url.query_pairs_mut()
            .append_pair("options", &format!("-c search_path={name}"))
            .append_pair("application_name", &name);
        Schema { admin_url: admin_url.to_owned(), name, url: url.into() }
    }

    /// Terminates every session of this schema's servers (`pg_terminate_backend`);
    /// returns how many were ended.
    pub async fn terminate_connections(&self) -> usize {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.expect("connecting as admin");
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .fetch_all(&mut conn)
        .await
        .expect("terminating the servers' sessions");
        let _ = conn.close().await;
        ended.into_iter().filter(|ended| *ended).count()
    }

    /// How many sessions this schema's servers hold.
    pub async fn sessions(&self) -> i64 {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.expect("connecting as admin");
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&self.name)
            .fetch_one(&mut conn)
            .await
            .expect("counting sessions");
        let _ = conn.close().await;
        n
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Drop is synchronous and may run on a runtime thread: use a thread of
        // our own, and give up rather than wait on a lock a server still holds.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await else { return };
                let _ = sqlx::query("SET lock_timeout = '2s'").execute(&mut conn).await;
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).execute(&mut conn).await;
                let _ = conn.close().await;
            });
        });
        let _ = dropped.join();
    }
}
