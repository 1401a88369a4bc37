//! Certificates from an ACME directory (RFC 8555; Let's Encrypt by default), the TLS-ALPN-01
//! challenge (RFC 8737) answered on the TLS listener itself, so no port 80 is needed.
//!
//! [`AcmeCerts`] is the TLS listener's certificate resolver: it serves the current certificate,
//! and during an order the challenge certificate to a validator that offers only the
//! `acme-tls/1` protocol. [`maintain`] obtains the certificate, keeps it with the account key in
//! the state directory (so a restart serves at once and does not order again), and renews it
//! once two thirds of its lifetime are over. A failed order keeps the certificate in use, is
//! logged and counted (`natkit_relay_acme_orders_total{result="failed"}`), and is tried again
//! after [`schedule::next_attempt`]'s backoff.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::AcmeConfig;
use crate::metrics::RelayMetrics;

/// The ALPN protocol of the TLS-ALPN-01 challenge: a handshake that negotiated it is a
/// validator's, and the connection is closed right after it.
pub const ALPN: &[u8] = b"acme-tls/1";
/// Let's Encrypt's production directory, the default `acme_directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// The default `acme_state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/natkit/acme";
/// Longest an order may take, from the first request to the certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

const ACCOUNT_FILE: &str = "account.json";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// Why an order failed. Says what the ACME server answered or which file could not be used;
/// never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("acme_state_dir {path}: {source}")]
    State {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ACME account at {directory}: {source}")]
    Account {
        directory: String,
        #[source]
        source: instant_acme::Error,
    },
    #[error("ACME order for {domains}: {source}")]
    Order {
        domains: String,
        #[source]
        source: instant_acme::Error,
    },
    #[error("ACME order for {domains}: {message}")]
    Refused { domains: String, message: String },
    #[error("ACME order for {domains} took longer than {} s", ORDER_TIMEOUT.as_secs())]
    Timeout { domains: String },
    #[error("the issued certificate cannot be used: {0}")]
    Certificate(String),
}

/// When to order, a pure rule: renew once two thirds of the lifetime are over (30 days before
/// the end of a 90-day certificate), and after a failure back off from 10 s, doubling up to an
/// hour.
pub mod schedule {
    use std::time::{Duration, SystemTime};

    /// The first retry after a failed order; each further failure doubles it.
    pub const FIRST_RETRY: Duration = Duration::from_secs(10);
    /// The longest wait between failed orders.
    pub const MAX_RETRY: Duration = Duration::from_secs(3600);

    /// When a certificate valid from `not_before` to `not_after` is due for renewal.
    pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
        let life = not_after.duration_since(not_before).unwrap_or_default();
        not_before + life * 2 / 3
    }

    /// How long to wait before the next order: `validity` is the current certificate's (none
    /// yet: order now), `failures` the orders that failed since the last success.
    pub fn next_attempt(
        validity: Option<(SystemTime, SystemTime)>,
        now: SystemTime,
        failures: u32,
    ) -> Duration {
        if failures > 0 {
            let doubled = FIRST_RETRY.saturating_mul(1 << (failures - 1).min(16));
            return doubled.min(MAX_RETRY);
        }
        match validity {
            None => Duration::ZERO,
            Some((nb, na)) => renew_at(nb, na)
                .duration_since(now)
                .unwrap_or(Duration::ZERO),
        }
    }
}

/// A certificate in use: the key rustls signs with, and its validity.
#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    not_before: SystemTime,
    not_after: SystemTime,
}

/// The certificate source and resolver of a TLS listener whose certificate comes from ACME.
#[derive(Debug)]
pub struct AcmeCerts {
    config: AcmeConfig,
    current: RwLock<Option<Current>>,
    /// Challenge certificates by domain, present while an order waits for validation.
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: instant_acme::AccountCredentials,
}

fn state_error(path: &Path) -> impl FnOnce(std::io::Error) -> AcmeError + '_ {
    move |source| AcmeError::State {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename (a crash leaves the old file
/// or the new one, never half of one), readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(state_error(&tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(state_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(state_error(path))
}

/// The chain and key as rustls uses them, with the leaf's validity and DNS names.
fn certified(chain_pem: &[u8], key_pem: &[u8]) -> Result<(Current, Vec<String>), String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate chain: {e}"))?;
    let leaf = chain.first().ok_or("no certificate in the chain")?;
    let crate::tls::Leaf {
        names,
        not_before,
        not_after,
    } = crate::tls::leaf(leaf)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| "no PEM private key")?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("private key: {e}"))?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|e| e.to_string())?;
    Ok((
        Current {
            key: Arc::new(key),
            not_before,
            not_after,
        },
        names,
    ))
}

/// The self-signed certificate a validator expects (RFC 8737 section 3): the domain as its only
/// name and the key authorization's SHA-256 in the critical acmeIdentifier extension.
fn challenge_cert(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

impl AcmeCerts {
    /// Creates the state directory (owner only) and takes the certificate kept there when it
    /// names every configured domain; otherwise there is none until [`maintain`] orders one.
    pub fn open(config: AcmeConfig) -> Result<AcmeCerts, AcmeError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = &config.state_dir;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(state_error(dir))?;
        // Written once now: a directory that cannot be written fails at start, not at renewal.
        let probe = dir.join(".writable");
        write_private(&probe, b"")?;
        let _ = std::fs::remove_file(&probe);
        let certs = AcmeCerts {
            current: RwLock::new(None),
            challenges: Mutex::new(HashMap::new()),
            config,
        };
        let (cert, key) = (certs.path(CERT_FILE), certs.path(KEY_FILE));
        if let (Ok(c), Ok(k)) = (std::fs::read(&cert), std::fs::read(&key)) {
            match certified(&c, &k) {
                Ok((current, names)) if certs.covers(&names) => {
                    info!(cert = %cert.display(), not_after = %unix_seconds(current.not_after), "serving the certificate kept in acme_state_dir");
                    *certs.current.write().expect("acme lock") = Some(current);
                }
                Ok(_) => {
                    info!(cert = %cert.display(), "the kept certificate does not name every one of acme_domains; ordering a new one")
                }
                Err(e) => {
                    warn!(cert = %cert.display(), error = %e, "the kept certificate cannot be used; ordering a new one")
                }
            }
        }
        Ok(certs)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.config.state_dir.join(file)
    }

    fn covers(&self, names: &[String]) -> bool {
        self.config
            .domains
            .iter()
            .all(|d| names.iter().any(|n| n.eq_ignore_ascii_case(d)))
    }

    fn domains(&self) -> String {
        self.config.domains.join(", ")
    }

    /// The configured domains; the first is the `turns:` name unless `tls_name` says otherwise.
    pub fn config(&self) -> &AcmeConfig {
        &self.config
    }

    /// The current certificate's validity, if there is one.
    pub fn validity(&self) -> Option<(SystemTime, SystemTime)> {
        self.current
            .read()
            .expect("acme lock")
            .as_ref()
            .map(|c| (c.not_before, c.not_after))
    }

    async fn account(&self) -> Result<instant_acme::Account, AcmeError> {
        let directory = self.config.directory.clone();
        let err = |source| AcmeError::Account {
            directory: directory.clone(),
            source,
        };
        let builder = || match &self.config.ca {
            Some(ca) => instant_acme::Account::builder_with_root(ca),
            None => instant_acme::Account::builder(),
        };
        let path = self.path(ACCOUNT_FILE);
        let stored = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<StoredAccount>(&b).ok())
            .filter(|s| s.directory == directory);
        if let Some(stored) = stored {
            return builder()
                .map_err(err)?
                .from_credentials(stored.credentials)
                .await
                .map_err(err);
        }
        let contact: Vec<String> = self
            .config
            .email
            .iter()
            .map(|e| format!("mailto:{e}"))
            .collect();
        let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = instant_acme::NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, credentials) = builder()
            .map_err(err)?
            .create(&new, directory.clone(), None)
            .await
            .map_err(err)?;
        let stored = StoredAccount {
            directory: directory.clone(),
            credentials,
        };
        let json = serde_json::to_vec(&stored).map_err(|e| err(e.into()))?;
        write_private(&path, &json)?;
        info!(directory = %directory, "ACME account created; its key is kept in acme_state_dir");
        Ok(account)
    }

    /// One order, from account to installed certificate.
    async fn order(&self) -> Result<SystemTime, AcmeError> {
        use instant_acme::{AuthorizationStatus, ChallengeType, Identifier, NewOrder};
        use instant_acme::{OrderStatus, RetryPolicy};
        let domains = self.domains();
        let err = |source| AcmeError::Order {
            domains: domains.clone(),
            source,
        };
        let refused = |message: String| AcmeError::Refused {
            domains: domains.clone(),
            message,
        };
        let account = self.account().await?;
        let ids: Vec<Identifier> = self
            .config
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(err)?;
        let _clear = ClearChallenges(self);
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(err)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(refused(format!("authorization is {other:?}"))),
            }
            let mut challenge = authz
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or_else(|| refused("the server offers no tls-alpn-01 challenge".into()))?;
            let domain = challenge.identifier().to_string().to_ascii_lowercase();
            let cert = challenge_cert(&domain, challenge.key_authorization().digest().as_ref())
                .map_err(AcmeError::Certificate)?;
            self.challenges
                .lock()
                .expect("acme lock")
                .insert(domain, cert);
            challenge.set_ready().await.map_err(err)?;
        }
        let retries = RetryPolicy::new().timeout(Duration::from_secs(60));
        let status = order.poll_ready(&retries).await.map_err(err)?;
        if status != OrderStatus::Ready {
            let why = order
                .state()
                .error
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| format!("order is {status:?}"));
            return Err(refused(why));
        }
        let key_pem = order.finalize().await.map_err(err)?;
        let chain_pem = order.poll_certificate(&retries).await.map_err(err)?;
        let (current, names) =
            certified(chain_pem.as_bytes(), key_pem.as_bytes()).map_err(AcmeError::Certificate)?;
        if !self.covers(&names) {
            return Err(AcmeError::Certificate(format!(
                "it names {names:?}, not every one of {domains}"
            )));
        }
        write_private(&self.path(KEY_FILE), key_pem.as_bytes())?;
        write_private(&self.path(CERT_FILE), chain_pem.as_bytes())?;
        let not_after = current.not_after;
        *self.current.write().expect("acme lock") = Some(current);
        Ok(not_after)
    }
}

/// Drops an order's challenge certificates however the order ends.
struct ClearChallenges<'a>(&'a AcmeCerts);

impl Drop for ClearChallenges<'_> {
    fn drop(&mut self) {
        self.0.challenges.lock().expect("acme lock").clear();
    }
}

impl ResolvesServerCert for AcmeCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validator = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.all(|p| p == ALPN));
        if validator {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .lock()
                .expect("acme lock")
                .get(&name)
                .cloned();
        }
        self.current
            .read()
            .expect("acme lock")
            .as_ref()
            .map(|c| Arc::clone(&c.key))
    }
}

fn unix_seconds(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("unix {secs}")
}

/// Orders the certificate when there is none and renews it when [`schedule`] says, for as long
/// as the listener runs.
pub async fn maintain(certs: Arc<AcmeCerts>, metrics: RelayMetrics) {
    let mut failures = 0u32;
    if let Some((_, na)) = certs.validity() {
        metrics.tls_certificate_expiry(na);
    }
    loop {
        let wait = schedule::next_attempt(certs.validity(), SystemTime::now(), failures);
        tokio::time::sleep(wait).await;
        let domains = certs.domains();
        let result = match tokio::time::timeout(ORDER_TIMEOUT, certs.order()).await {
            Ok(r) => r,
            Err(_) => Err(AcmeError::Timeout {
                domains: domains.clone(),
            }),
        };
        match result {
            Ok(not_after) => {
                failures = 0;
                metrics.acme_order(true);
                metrics.tls_certificate_expiry(not_after);
                info!(domains = %domains, not_after = %unix_seconds(not_after), "ACME certificate issued and in use");
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                metrics.acme_order(false);
                let retry = schedule::next_attempt(None, SystemTime::now(), failures);
                if certs.validity().is_some() {
                    warn!(error = %e, retry_in_s = retry.as_secs(), "ACME renewal failed; the current certificate stays in use");
                } else {
                    warn!(error = %e, retry_in_s = retry.as_secs(), "ACME order failed; TLS clients are refused until a certificate is issued");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::schedule::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn renewal_and_retry_schedule() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        let lifetime90 = Some((t0, t0 + 90 * day));
        let cases = [
            // (validity, now, failures, wait)
            (None, t0, 0, Duration::ZERO),
            (lifetime90, t0, 0, 60 * day),
            (lifetime90, t0 + 59 * day, 0, day),
            (lifetime90, t0 + 61 * day, 0, Duration::ZERO),
            (lifetime90, t0 + 100 * day, 0, Duration::ZERO),
            // A 30 s certificate (a test CA's) renews after 20 s.
            (
                Some((t0, t0 + Duration::from_secs(30))),
                t0,
                0,
                Duration::from_secs(20),
            ),
            (None, t0, 1, FIRST_RETRY),
            (lifetime90, t0 + 61 * day, 2, 2 * FIRST_RETRY),
            (None, t0, 3, 4 * FIRST_RETRY),
            (None, t0, 12, MAX_RETRY),
            (None, t0, u32::MAX, MAX_RETRY),
        ];
        for (validity, now, failures, want) in cases {
            assert_eq!(
                next_attempt(validity, now, failures),
                want,
                "{validity:?} {now:?} {failures}"
            );
        }
    }
}
