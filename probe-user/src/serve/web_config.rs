//! `serve --web-config FILE`: Prometheus exporter-toolkit's web configuration (the YAML of
//! node_exporter's `--web.config.file`): `tls_server_config` and `basic_auth_users`, with
//! the same keys and meanings. Relative paths are relative to the file's directory. A key
//! ttmlat does not implement is rejected by name; an unknown key is an error. Everything is
//! checked here, before any probe is attached.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result, bail, ensure};
use rustls::{
    RootCertStore, ServerConfig, SupportedProtocolVersion,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
    version::{TLS12, TLS13},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde::Deserialize;
use serde_yaml_ng::Value;

/// The file, as exporter-toolkit reads it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_ca: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Value>,
    curve_preferences: Option<Value>,
    prefer_server_cipher_suites: Option<Value>,
    client_allowed_sans: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    http2: Option<bool>,
    headers: Option<Value>,
}

/// What `serve` runs with.
pub struct WebConfig {
    /// TLS, when `tls_server_config` sets any of it.
    pub tls: Option<Tls>,
    /// Basic-auth users and their bcrypt hashes.
    pub users: BTreeMap<String, String>,
    /// Said on stderr at start-up (an expired certificate, a file that configures nothing).
    pub warnings: Vec<String>,
}

pub struct Tls {
    pub config: Arc<ServerConfig>,
    /// How clients are asked for certificates, for the start-up line.
    pub client_auth: &'static str,
}

impl WebConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the web configuration {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir).with_context(|| format!("web configuration {}", path.display()))
    }

    /// The configuration in `text`; relative paths are taken from `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Self> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str(text)?
        };
        if file.rate_limit.is_some() {
            bail!(unsupported(
                "rate_limit",
                "scrapes are limited by --max-connections"
            ));
        }
        if let Some(http) = &file.http_server_config {
            if http.headers.is_some() {
                bail!(unsupported(
                    "http_server_config.headers",
                    "no extra response headers"
                ));
            }
            if http.http2 == Some(true) {
                bail!(unsupported(
                    "http_server_config.http2: true",
                    "ttmlat serves HTTP/1.1, which Prometheus scrapes; remove it or set false"
                ));
            }
        }
        let users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            ensure!(
                !user.is_empty() && !user.contains(':'),
                "basic_auth_users: {user:?} is not a user name (empty, or has a ':')"
            );
            if hash.parse::<bcrypt::HashParts>().is_err() {
                bail!(
                    "basic_auth_users.{user}: not a bcrypt hash (\"$2y$…\", 60 characters): the \
                     file holds hashes, never passwords; make one with `htpasswd -nBC 10 {user}` \
                     (the part after the ':')"
                );
            }
        }
        let mut warnings = Vec::new();
        let tls = match file.tls_server_config {
            Some(t) => tls(t, dir, &mut warnings)?,
            None => None,
        };
        if tls.is_none() && users.is_empty() {
            warnings.push("the web configuration sets neither TLS nor users".to_string());
        }
        Ok(Self {
            tls,
            users,
            warnings,
        })
    }
}

impl WebConfig {
    /// What `serve` runs with: basic auth (its decoy hash made here: one bcrypt, call it off
    /// the serving thread) and TLS, with their refusal counters exported at 0 in `metrics`.
    pub fn secure(
        self,
        metrics: &Arc<super::metrics::Metrics>,
    ) -> Result<(Option<Arc<super::auth::BasicAuth>>, Option<Tls>)> {
        metrics.may_refuse(&self.refusals());
        let auth = if self.users.is_empty() {
            None
        } else {
            Some(Arc::new(super::auth::BasicAuth::new(
                self.users,
                Arc::clone(metrics),
            )?))
        };
        Ok((auth, self.tls))
    }

    /// The `ttmlat_http_refused_total` reasons this configuration can count.
    fn refusals(&self) -> Vec<&'static str> {
        use super::metrics::refusal;
        let mut r = Vec::new();
        if self.tls.is_some() {
            r.push(refusal::TLS_HANDSHAKE);
        }
        if !self.users.is_empty() {
            r.push(refusal::UNAUTHORIZED);
        }
        r
    }
}

fn unsupported(key: &str, why: &str) -> String {
    format!("{key} is not supported by ttmlat ({why})")
}

fn tls(t: TlsFile, dir: &Path, warnings: &mut Vec<String>) -> Result<Option<Tls>> {
    for (key, set, why) in [
        (
            "cipher_suites",
            t.cipher_suites.is_some(),
            "rustls' own safe suites are used",
        ),
        (
            "curve_preferences",
            t.curve_preferences.is_some(),
            "rustls' own key exchanges are used",
        ),
        (
            "prefer_server_cipher_suites",
            t.prefer_server_cipher_suites.is_some(),
            "the server's order always applies",
        ),
        (
            "client_allowed_sans",
            t.client_allowed_sans.is_some(),
            "any certificate the client CAs signed is accepted",
        ),
    ] {
        if set {
            bail!(unsupported(&format!("tls_server_config.{key}"), why));
        }
    }
    let enabled = t.cert_file.is_some()
        || t.cert.is_some()
        || t.key_file.is_some()
        || t.key.is_some()
        || t.client_ca_file.is_some()
        || t.client_ca.is_some()
        || t.client_auth_type.is_some();
    if !enabled {
        return Ok(None);
    }
    let (cert_pem, cert_from) = pem(&t.cert_file, &t.cert, "cert", dir)?;
    let (key_pem, key_from) = pem(&t.key_file, &t.key, "key", dir)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the certificates in {cert_from}"))?;
    ensure!(!certs.is_empty(), "{cert_from} holds no PEM certificate");
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("reading the private key in {key_from}"))?;
    if let Some(w) = validity_warning(&certs[0], &cert_from)? {
        warnings.push(w);
    }
    let ca = match (&t.client_ca_file, &t.client_ca) {
        (None, None) => None,
        (file, text) => Some(pem(file, text, "client_ca", dir)?),
    };
    let kind = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let (verifier, client_auth): (Arc<dyn ClientCertVerifier>, &'static str) = match kind {
        "" | "NoClientCert" => {
            ensure!(
                ca.is_none(),
                "tls_server_config: client CAs are configured without a client_auth_type"
            );
            (
                WebPkiClientVerifier::no_client_auth(),
                "no client certificates",
            )
        }
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some((ca_pem, ca_from)) = ca else {
                bail!(
                    "tls_server_config: client_auth_type {kind} needs client_ca_file or client_ca"
                );
            };
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca_pem) {
                let c = c.with_context(|| format!("reading the certificates in {ca_from}"))?;
                roots
                    .add(c)
                    .with_context(|| format!("a certificate in {ca_from} is not a usable CA"))?;
            }
            ensure!(!roots.is_empty(), "{ca_from} holds no PEM certificate");
            let builder = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            );
            let (builder, said) = if kind == "VerifyClientCertIfGiven" {
                (
                    builder.allow_unauthenticated(),
                    "client certificates verified if given",
                )
            } else {
                (builder, "client certificates required and verified")
            };
            let verifier = builder
                .build()
                .with_context(|| format!("client CAs from {ca_from}"))?;
            (verifier, said)
        }
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => bail!(unsupported(
            &format!("tls_server_config.client_auth_type {kind}"),
            "a client certificate is only accepted if client_ca_file's CAs signed it: use \
             RequireAndVerifyClientCert or VerifyClientCertIfGiven"
        )),
        other => bail!(
            "tls_server_config.client_auth_type {other:?} is not one of NoClientCert, \
             VerifyClientCertIfGiven, RequireAndVerifyClientCert"
        ),
    };
    let min = version(t.min_version.as_deref(), "min_version")?.unwrap_or(0);
    let max = version(t.max_version.as_deref(), "max_version")?.unwrap_or(1);
    ensure!(
        min <= max,
        "tls_server_config: min_version is above max_version"
    );
    let versions: Vec<&'static SupportedProtocolVersion> = [&TLS12, &TLS13][min..=max].to_vec();
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&versions)
            .context("TLS versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .with_context(|| {
                format!("the private key in {key_from} and the certificate in {cert_from}")
            })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Tls {
        config: Arc::new(config),
        client_auth,
    }))
}

/// The PEM text of `key` (`<key>_file` or inline `<key>`), and where it came from.
fn pem(
    file: &Option<PathBuf>,
    inline: &Option<String>,
    key: &str,
    dir: &Path,
) -> Result<(Vec<u8>, String)> {
    match (file, inline) {
        (Some(_), Some(_)) => bail!("tls_server_config: both {key}_file and {key} are set"),
        (Some(f), None) => {
            let path = dir.join(f);
            let bytes = std::fs::read(&path)
                .with_context(|| format!("reading {key}_file {}", path.display()))?;
            Ok((bytes, format!("{key}_file {}", path.display())))
        }
        (None, Some(text)) => Ok((text.as_bytes().to_vec(), format!("inline {key}"))),
        (None, None) => bail!("tls_server_config: one of {key}_file or {key} is needed"),
    }
}

/// Index into [TLS12, TLS13] of a `min_version`/`max_version` value.
fn version(v: Option<&str>, key: &str) -> Result<Option<usize>> {
    match v {
        None => Ok(None),
        Some("TLS12") => Ok(Some(0)),
        Some("TLS13") => Ok(Some(1)),
        Some(old @ ("TLS10" | "TLS11")) => bail!(unsupported(
            &format!("tls_server_config.{key} {old}"),
            "rustls implements TLS 1.2 and 1.3 only"
        )),
        Some(other) => bail!("tls_server_config.{key} {other:?} is not one of TLS12, TLS13"),
    }
}

/// A warning when the serving certificate is not valid now: clients will refuse it.
fn validity_warning(cert: &CertificateDer<'_>, from: &str) -> Result<Option<String>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| anyhow::anyhow!("parsing the first certificate in {from}: {e}"))?;
    let v = parsed.validity();
    let now = x509_parser::time::ASN1Time::now();
    Ok(if now > v.not_after {
        Some(format!(
            "the certificate in {from} expired on {}: clients that verify it will refuse the \
             handshake",
            v.not_after
        ))
    } else if now < v.not_before {
        Some(format!(
            "the certificate in {from} is not valid before {}: clients that verify it will \
             refuse the handshake",
            v.not_before
        ))
    } else {
        None
    })
}
