//! Widget tokens from other languages' JWT libraries, minted by the Node.js
//! (`jose`) and Python (PyJWT) snippets of `docs/integration.md` word for
//! word, open the running server's widget API; and every kind of token the
//! server refuses is refused with `401` and its stable code.
//!
//! The libraries are the ones `cargo xtask tools` installs under
//! `$CARGO_HOME` (`jose/` from npm, `pyjwt/` from PyPI). Without them the
//! snippet tests skip, saying so, except under `CI=true`, where they fail.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pientegra_tests::{Options, Stack, TOKEN_SECRET};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The partner's integration guide, whose snippets these tests run.
const GUIDE: &str = include_str!("../../docs/integration.md");
const AUDIENCE: &str = "pientegra-kit/widget";
/// A display name with letters beyond ASCII, as partners' users have.
const NAME: &str = "Ayşe Yılmaz";

/// The first ```` ```language ```` block of the guide's step 2 (minting a token).
fn snippet(language: &str) -> &'static str {
    let step = GUIDE
        .split("\n## 2. ")
        .nth(1)
        .and_then(|rest| rest.split("\n## 3. ").next())
        .expect("docs/integration.md has a step 2 followed by a step 3");
    let fence = format!("```{language}\n");
    let start = step.find(&fence).unwrap_or_else(|| panic!("step 2 has a {language} block")) + fence.len();
    let length = step[start..].find("```").expect("the block is closed");
    &step[start..start + length]
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .expect("CARGO_HOME or HOME is set")
}

/// `Some(path)` when `path` exists; otherwise `None` (the test skips, saying
/// so), except under `CI=true`, where a missing library fails the test.
fn installed(library: &str, path: PathBuf) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(std::env::var("CI").is_err(), "CI=true but {library} is missing at {} (cargo xtask tools)", path.display());
    eprintln!("skipped: {library} is missing at {} (cargo xtask tools installs it)", path.display());
    None
}

/// How a partner backend in another language mints: a snippet of the guide
/// and the one line that calls it with the command's arguments.
struct Minter {
    program: &'static str,
    script: String,
    file: &'static str,
    /// Where the library lives: linked as `node_modules`, or put on `PYTHONPATH`.
    library: PathBuf,
}

impl Minter {
    /// The guide's Node.js snippet, with `jose` from `$CARGO_HOME/jose`.
    fn jose() -> Option<Minter> {
        let library = installed("jose (npm)", cargo_home().join("jose/node_modules"))?;
        let script =
            format!("{}\nconsole.log(await mintWidgetToken(process.argv[2], process.argv[3]));\n", snippet("js"));
        Some(Minter { program: "node", script, file: "mint.mjs", library })
    }

    /// The guide's Python snippet, with PyJWT from `$CARGO_HOME/pyjwt`.
    fn pyjwt() -> Option<Minter> {
        let library = installed("PyJWT (PyPI)", cargo_home().join("pyjwt"))?;
        let script = format!("{}\nimport sys\n\nprint(mint_widget_token(*sys.argv[1:]))\n", snippet("python"));
        Some(Minter { program: "python3", script, file: "mint.py", library })
    }

    /// A token for `user` (and `name`), with `WIDGET_TOKEN_SECRET` set to `secrets`.
    async fn mint(&self, secrets: &str, user: &str, name: Option<&str>) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(self.file), &self.script).expect("script");
        let mut command = tokio::process::Command::new(self.program);
        if self.program == "node" {
            std::os::unix::fs::symlink(&self.library, dir.path().join("node_modules")).expect("node_modules link");
        } else {
            command.env("PYTHONPATH", &self.library);
        }
        let output = command
            .current_dir(dir.path())
            .arg(self.file)
            .arg(user)
            .args(name)
            .env("WIDGET_TOKEN_SECRET", secrets)
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {}: {e}", self.program));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{} {}: {stderr}", self.program, self.file);
        String::from_utf8(output.stdout).expect("UTF-8 token").trim().to_owned()
    }
}

/// The claims of a token, read without checking it.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON claims")
}

/// A partner's token opens the account, a deposit carries its display name
/// to Pientegra, and a stream ticket is issued for it.
async fn opens_the_widget_api(minter: Minter, user: &str) {
    let stack = Stack::start().await;
    let token = minter.mint(TOKEN_SECRET, user, Some(NAME)).await;
    let claims = claims_of(&token);
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some(user), Some(AUDIENCE)), "{claims}");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600, "{claims}");

    assert_eq!(stack.account(&token).await.external_user_id, user);
    let deposit = stack.deposit(&token, "10000").await;
    let state = stack.sandbox_state().await;
    let intent = state["intents"]
        .as_array()
        .expect("intents")
        .iter()
        .find(|intent| intent["intentId"] == deposit.intent_id.to_string())
        .expect("the sandbox has the intent");
    assert_eq!(intent["externalUserLabel"], NAME, "{intent}");
    assert!(stack.stream_ticket(&token).await.starts_with("st1."));

    // Without a name, the token is as good.
    let nameless = minter.mint(TOKEN_SECRET, user, None).await;
    assert!(claims_of(&nameless).get("name").is_none());
    assert_eq!(stack.account(&nameless).await.external_user_id, user);
}

#[tokio::test]
async fn a_token_minted_with_jose_as_the_guide_shows_opens_the_widget_api() {
    let Some(minter) = Minter::jose() else { return };
    opens_the_widget_api(minter, "node-customer-42").await;
}

#[tokio::test]
async fn a_token_minted_with_pyjwt_as_the_guide_shows_opens_the_widget_api() {
    let Some(minter) = Minter::pyjwt() else { return };
    opens_the_widget_api(minter, "python-customer-42").await;
}

#[tokio::test]
async fn during_a_rotation_the_guides_tokens_verify_under_either_secret_and_no_other() {
    let (Some(jose), Some(pyjwt)) = (Minter::jose(), Minter::pyjwt()) else { return };
    let newest = "rotated-secret-0123456789abcdef0123456789";
    let stack =
        Stack::with(Options { token_secrets: vec![newest.to_owned(), TOKEN_SECRET.to_owned()], ..Options::default() })
            .await;
    let rotating = format!("{newest},{TOKEN_SECRET}");
    for minter in [&jose, &pyjwt] {
        // The backend's list, newest first: the snippet signs with the newest.
        let token = minter.mint(&rotating, "rotating-user", None).await;
        assert_eq!(stack.account(&token).await.external_user_id, "rotating-user");
        // A backend not yet switched signs with the older one: still accepted.
        let token = minter.mint(TOKEN_SECRET, "rotating-user", None).await;
        assert_eq!(stack.account(&token).await.external_user_id, "rotating-user");
        // A secret the server does not hold is refused.
        let token = minter.mint("dropped-secret-0123456789abcdef0123456789", "rotating-user", None).await;
        let (status, body) = stack.get_json(&token, "/api/account").await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{body}");
    }
}

/// A JWT of `claims` under `header`, signed with HMAC-SHA256 whatever the
/// header says (as an attacker who knows the format signs).
fn hand_signed(header: Value, claims: &Value, secret: &str) -> String {
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &EncodingKey::from_secret(secret.as_bytes()), Algorithm::HS256)
            .expect("HS256 signs");
    format!("{input}.{signature}")
}

fn signed(algorithm: Algorithm, claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(secret.as_bytes())).expect("signs")
}

/// `claims` without `field`, or with it set to `value`.
fn with(claims: &Value, field: &str, value: Value) -> Value {
    let mut claims = claims.clone();
    match value {
        Value::Null => {
            claims.as_object_mut().expect("object").remove(field);
        }
        value => claims[field] = value,
    }
    claims
}

#[tokio::test]
async fn every_refused_kind_of_token_is_refused_with_401_and_its_code() {
    let stack = Stack::start().await;
    let now = chrono::Utc::now().timestamp();
    let good = json!({"sub": "refused-user", "aud": AUDIENCE, "iat": now - 10, "exp": now + 3600});
    let hs256 = |claims: &Value| signed(Algorithm::HS256, claims, TOKEN_SECRET);
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let cases = [
        ("alg none", none, "token_wrong_algorithm"),
        ("alg HS512", signed(Algorithm::HS512, &good, TOKEN_SECRET), "token_wrong_algorithm"),
        ("alg HS384", signed(Algorithm::HS384, &good, TOKEN_SECRET), "token_wrong_algorithm"),
        (
            "alg RS256 signed with the secret",
            hand_signed(json!({"alg": "RS256"}), &good, TOKEN_SECRET),
            "token_wrong_algorithm",
        ),
        ("no aud", hs256(&with(&good, "aud", Value::Null)), "token_wrong_audience"),
        ("another aud", hs256(&with(&good, "aud", json!("pientegra-kit/admin"))), "token_wrong_audience"),
        ("aud list without ours", hs256(&with(&good, "aud", json!(["someone-else"]))), "token_wrong_audience"),
        ("no exp", hs256(&with(&good, "exp", Value::Null)), "token_missing_claim"),
        ("no iat", hs256(&with(&good, "iat", Value::Null)), "token_missing_claim"),
        ("no sub", hs256(&with(&good, "sub", Value::Null)), "token_missing_claim"),
        ("lifetime 24 h 1 s", hs256(&with(&good, "exp", json!(now - 10 + 24 * 3600 + 1))), "token_lifetime_refused"),
        ("lifetime ten years", hs256(&with(&good, "exp", json!(now + 10 * 365 * 86_400))), "token_lifetime_refused"),
        ("exp before iat", hs256(&with(&good, "exp", json!(now - 20))), "token_lifetime_refused"),
        (
            "iat five minutes ahead",
            hs256(&with(&with(&good, "iat", json!(now + 300)), "exp", json!(now + 900))),
            "token_not_yet_valid",
        ),
        ("nbf five minutes ahead", hs256(&with(&good, "nbf", json!(now + 300))), "token_not_yet_valid"),
        ("empty sub", hs256(&with(&good, "sub", json!(""))), "token_invalid_claim"),
        ("sub of 129 characters", hs256(&with(&good, "sub", json!("u".repeat(129)))), "token_invalid_claim"),
        ("sub with a control character", hs256(&with(&good, "sub", json!("user\n1"))), "token_invalid_claim"),
        ("the account of a PGM order", hs256(&with(&good, "sub", json!("pgm-order:x"))), "token_invalid_claim"),
        ("empty name", hs256(&with(&good, "name", json!(""))), "token_invalid_claim"),
        ("expired", hs256(&with(&with(&good, "iat", json!(now - 7200)), "exp", json!(now - 3600))), "token_expired"),
        (
            "another secret",
            signed(Algorithm::HS256, &good, "another-secret-0123456789abcdef0123456789"),
            "unauthorized",
        ),
        ("not a JWT", "garbage".to_owned(), "unauthorized"),
    ];
    for (what, token, code) in &cases {
        for (status, body) in [
            stack.get_json(token, "/api/account").await,
            stack.post_json(token, "/api/stream-ticket", &uuid::Uuid::new_v4().to_string(), json!({})).await,
        ] {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
            assert_eq!(body["error"], *code, "{what}: {body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty() && !message.contains(token.as_str()), "{what}: {body}");
        }
    }
    // The same claims, well formed, are accepted: each case differs from it in one respect.
    assert_eq!(stack.account(&hs256(&good)).await.external_user_id, "refused-user");
    let labelled = hs256(&with(&good, "name", json!(NAME)));
    assert_eq!(stack.account(&labelled).await.external_user_id, "refused-user");
}
