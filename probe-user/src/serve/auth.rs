//! HTTP basic authentication against the web configuration's bcrypt hashes, as
//! exporter-toolkit does it: a request without valid credentials gets 401 with
//! `WWW-Authenticate: Basic`, whether the user is unknown or the password wrong, and an
//! unknown user costs the same bcrypt comparison (against a hash made at start-up) so that
//! timing does not tell which. bcrypt runs on the blocking pool, one at a time, never on the
//! thread that serves connections; outcomes are cached under a SHA-256 of user, password and
//! hash (no password is kept), so a scraper's repeated credentials cost one comparison.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine;
use tokio::sync::Semaphore;

use super::metrics::Metrics;

/// Cached outcomes kept; the cache is emptied when it is full (a flood of distinct guesses
/// then costs bcrypt each, one at a time, as it would anyway).
const CACHE_MAX: usize = 1024;

pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Compared against for an unknown user, at the configured users' highest cost.
    decoy: String,
    cache: Mutex<HashMap<[u8; 32], bool>>,
    bcrypt_turn: Semaphore,
    metrics: Arc<Metrics>,
}

impl BasicAuth {
    /// `users`: name → bcrypt hash, checked by `WebConfig`. Makes the decoy hash (one bcrypt
    /// at the users' cost: call it off the serving thread).
    pub fn new(users: BTreeMap<String, String>, metrics: Arc<Metrics>) -> Result<Self> {
        let cost = users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let decoy = bcrypt::hash("ttmlat decoy: no such user", cost)
            .context("making the decoy bcrypt hash")?;
        Ok(Self {
            users,
            decoy,
            cache: Mutex::new(HashMap::new()),
            bcrypt_turn: Semaphore::new(1),
            metrics,
        })
    }

    /// Whether `authorization` (the header's value) names a user with its password.
    pub async fn allows(self: &Arc<Self>, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let (known, hash) = match self.users.get(&user) {
            Some(h) => (true, h.clone()),
            None => (false, self.decoy.clone()),
        };
        let digest = fingerprint(&user, &password, &hash);
        let cached = self.cache.lock().ok().and_then(|c| c.get(&digest).copied());
        let matches = match cached {
            Some(m) => m,
            None => {
                let Ok(_turn) = self.bcrypt_turn.acquire().await else {
                    return false;
                };
                let compared =
                    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash)).await;
                let m = matches!(compared, Ok(Ok(true)));
                if let Ok(mut c) = self.cache.lock() {
                    if c.len() >= CACHE_MAX {
                        c.clear();
                    }
                    c.insert(digest, m);
                }
                m
            }
        };
        known && matches
    }
}

/// User and password of a `Basic` authorization value.
fn credentials(value: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn fingerprint(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, password, hash] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The middleware: 401 unless the request's credentials are valid.
pub async fn require(State(auth): State<Arc<BasicAuth>>, req: Request, next: Next) -> Response {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    if auth.allows(value.as_deref()).await {
        return next.run(req).await;
    }
    auth.metrics.refused(super::metrics::refusal::UNAUTHORIZED);
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"ttmlat\"")],
        "Unauthorized\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {b64}").into_bytes()
    }

    #[tokio::test]
    async fn only_a_known_user_with_its_password_passes() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let users = BTreeMap::from([("prometheus".to_string(), hash)]);
        let auth = Arc::new(BasicAuth::new(users, Arc::new(Metrics::new())).unwrap());
        assert!(auth.allows(Some(&header("prometheus", "s3cret"))).await);
        // Cached: the same answer again.
        assert!(auth.allows(Some(&header("prometheus", "s3cret"))).await);
        assert!(!auth.allows(Some(&header("prometheus", "wrong"))).await);
        assert!(!auth.allows(Some(&header("prometheus", "wrong"))).await);
        // An unknown user with a known user's password.
        assert!(!auth.allows(Some(&header("nobody", "s3cret"))).await);
        assert!(!auth.allows(None).await);
        assert!(!auth.allows(Some(b"Bearer x")).await);
        assert!(!auth.allows(Some(b"Basic !!!")).await);
        // The decoy was made at the users' cost.
        assert!(auth.decoy.starts_with("$2b$04$"), "{}", auth.decoy);
    }
}
