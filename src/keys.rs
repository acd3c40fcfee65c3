//! Signing keys: which exist, which one signs, and keeping every instance
//! on the same set.
//!
//! - HS256 (default): the secret is `SECRET_KEY`, or, when that is unset, a
//!   random secret generated once and stored in the database, so every
//!   instance and every restart agree on it.
//! - EdDSA (Ed25519): keys live in the database (`signing_keys`), each with
//!   a `kid`; the newest signs, all verify, and the public halves are
//!   served as a JWK Set at `/.well-known/jwks.json`. `authd keys rotate`
//!   adds a key; running instances pick it up at their next periodic reload,
//!   or at once when they meet a token naming a `kid` they do not know
//!   (rate-limited, so garbage `kid`s cannot hammer the database). Tokens
//!   signed by an older key stay valid until they expire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;

use crate::domain::{now_ms, Claims, Ed25519Key, SigningKeys, TokenCodec, TokenError};
use crate::settings::{JwtAlgorithm, Settings};
use crate::store::{SigningKeyRecord, Store, StoreError};

/// At most one on-demand reload per this interval.
const MIN_RELOAD_GAP: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key: {0}")]
    Invalid(String),
}

struct CodecParams {
    issuer: String,
    audience: String,
    access_ttl_secs: i64,
}

/// The current [`TokenCodec`], swapped when the key set changes.
pub struct KeyRing {
    current: ArcSwap<TokenCodec>,
    /// Where EdDSA keys are reloaded from; `None` for HS256 (fixed secret).
    store: Option<Arc<dyn Store>>,
    params: CodecParams,
    last_reload: std::sync::Mutex<Option<Instant>>,
}

impl KeyRing {
    /// Loads (creating if needed) the keys the settings ask for.
    pub async fn load(settings: &Settings, store: Arc<dyn Store>) -> Result<Arc<Self>, KeyError> {
        let params = CodecParams {
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            access_ttl_secs: settings.access_token_ttl_secs,
        };
        let (keys, reload_from) = match settings.jwt_algorithm {
            JwtAlgorithm::Hs256 => (hs256_secret(settings, &*store).await?, None),
            JwtAlgorithm::EdDsa => {
                if store.signing_keys().await?.is_empty() {
                    let kid = add_key(&*store).await?;
                    tracing::warn!(
                        event = "signing_key_created",
                        kid,
                        "no Ed25519 key stored: created one"
                    );
                }
                (ed25519_keys(&*store).await?, Some(store))
            }
        };
        let codec = build(&keys, &params)?;
        Ok(Arc::new(KeyRing {
            current: ArcSwap::from_pointee(codec),
            store: reload_from,
            params,
            last_reload: std::sync::Mutex::new(None),
        }))
    }

    /// The codec to sign with now.
    pub fn codec(&self) -> Arc<TokenCodec> {
        self.current.load_full()
    }

    /// Verifies a token; `allow_expired` lets an expired one through. A
    /// token naming an unknown `kid` triggers one (rate-limited) reload.
    pub async fn verify(&self, token: &str, allow_expired: bool) -> Result<Claims, TokenError> {
        let check = |codec: &TokenCodec| {
            if allow_expired {
                codec.verify_allow_expired(token)
            } else {
                codec.verify(token)
            }
        };
        match check(&self.current.load()) {
            Err(TokenError::UnknownKey) => {
                if self.reload_if_due().await {
                    check(&self.current.load()).map_err(|e| match e {
                        TokenError::UnknownKey => TokenError::Invalid,
                        other => other,
                    })
                } else {
                    Err(TokenError::Invalid)
                }
            }
            other => other,
        }
    }

    /// Re-reads the key set (EdDSA only).
    pub async fn reload(&self) -> Result<(), KeyError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let keys = ed25519_keys(&**store).await?;
        let codec = build(&keys, &self.params)?;
        let old_kid = self.current.load().signing_kid().map(str::to_owned);
        if codec.signing_kid() != old_kid.as_deref() {
            tracing::info!(
                event = "signing_key_changed",
                kid = codec.signing_kid().unwrap_or(""),
                "now signing with a new key"
            );
        }
        self.current.store(Arc::new(codec));
        Ok(())
    }

    async fn reload_if_due(&self) -> bool {
        if self.store.is_none() {
            return false;
        }
        {
            let Ok(mut last) = self.last_reload.lock() else {
                return false;
            };
            if last.is_some_and(|at| at.elapsed() < MIN_RELOAD_GAP) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.reload().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(event = "key_reload_failed", error = %e, "reloading signing keys failed");
                false
            }
        }
    }

    /// Reloads every `every` in the background (EdDSA only).
    pub fn spawn_periodic_reload(
        self: &Arc<Self>,
        every: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.store.as_ref()?;
        let ring = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(e) = ring.reload().await {
                    tracing::warn!(event = "key_reload_failed", error = %e, "reloading signing keys failed");
                }
            }
        }))
    }
}

/// Adds a new Ed25519 key (which becomes the signing key) and returns its
/// `kid`. What `authd keys rotate` does.
pub(crate) async fn add_key(store: &dyn Store) -> Result<String, KeyError> {
    let created_at_ms = now_ms();
    let suffix: u32 = rand::random();
    let kid = format!("ed25519-{created_at_ms}-{suffix:08x}");
    let key = Ed25519Key::generate(kid.clone()).map_err(KeyError::Invalid)?;
    store
        .insert_signing_key(&SigningKeyRecord {
            kid: kid.clone(),
            algorithm: "EdDSA".into(),
            private_key: base64::engine::general_purpose::STANDARD.encode(&key.private_pkcs8_der),
            public_key: key.public_x(),
            created_at_ms,
        })
        .await?;
    Ok(kid)
}

async fn hs256_secret(settings: &Settings, store: &dyn Store) -> Result<SigningKeys, KeyError> {
    if !settings.secret_key.is_empty() {
        if settings.secret_key.len() < crate::settings::GOOD_SECRET_BYTES {
            tracing::warn!(
                event = "weak_secret",
                length = settings.secret_key.len(),
                "SECRET_KEY is shorter than 32 bytes (accepted, so the old service's key keeps \
                 working): move to a random key of at least 32 bytes, or to jwt_algorithm = \
                 \"EdDSA\", when you can"
            );
        }
        return Ok(SigningKeys::Hs256 {
            secret: settings.secret_key.expose().as_bytes().to_vec(),
        });
    }
    let candidate =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 48]>());
    let secret = store.signing_secret(&candidate).await?;
    // Not a check of anything a client sent: whether this start stored
    // its candidate, or found the secret an earlier start (or another
    // instance) stored, only picks the log line.
    if secret == candidate {
        tracing::warn!(
            event = "generated_secret",
            "SECRET_KEY is not set: generated a random signing secret and stored it in the \
             database, where every instance and restart finds it; set SECRET_KEY to manage \
             it yourself"
        );
    } else {
        tracing::warn!(
            event = "stored_secret",
            "SECRET_KEY is not set: using the random signing secret an earlier start or \
             another instance stored in the database; set SECRET_KEY to manage it yourself"
        );
    }
    Ok(SigningKeys::Hs256 {
        secret: secret.into_bytes(),
    })
}

async fn ed25519_keys(store: &dyn Store) -> Result<SigningKeys, KeyError> {
    let records = store.signing_keys().await?;
    let keys = records
        .iter()
        .filter(|r| r.algorithm == "EdDSA")
        .map(decode_record)
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(KeyError::Invalid("no Ed25519 signing key stored".into()));
    }
    Ok(SigningKeys::Ed25519(keys))
}

fn decode_record(record: &SigningKeyRecord) -> Result<Ed25519Key, KeyError> {
    let bad = |what: &str| KeyError::Invalid(format!("key {}: bad {what}", record.kid));
    let private_pkcs8_der = base64::engine::general_purpose::STANDARD
        .decode(&record.private_key)
        .map_err(|_| bad("private key encoding"))?;
    let public_key: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&record.public_key)
        .map_err(|_| bad("public key encoding"))?
        .try_into()
        .map_err(|_| bad("public key length"))?;
    Ok(Ed25519Key {
        kid: record.kid.clone(),
        private_pkcs8_der,
        public_key,
    })
}

fn build(keys: &SigningKeys, params: &CodecParams) -> Result<TokenCodec, KeyError> {
    TokenCodec::new(
        keys,
        &params.issuer,
        &params.audience,
        params.access_ttl_secs,
    )
    .map_err(KeyError::Invalid)
}
