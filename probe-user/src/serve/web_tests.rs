//! `--web-config`: what the file may say, and HTTPS with basic auth and client certificates
//! served over loopback by the same listener and router `ttmlat serve` runs.

use std::{path::Path, sync::Arc, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    metrics::{Metrics, refusal},
    web_config::WebConfig,
};

/// A CA, a server certificate for 127.0.0.1 it signed, and a client certificate it signed.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn leaf(issuer: &Issuer<'_, KeyPair>, usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, "ttmlat test");
    p.extended_key_usages.push(usage);
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let mut p = CertificateParams::new(Vec::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "ttmlat test CA");
    let key = KeyPair::generate().expect("key");
    let ca = p.self_signed(&key).expect("self-sign").pem();
    let issuer = Issuer::new(p, key);
    Pki {
        ca,
        server: leaf(&issuer, ExtendedKeyUsagePurpose::ServerAuth),
        client: leaf(&issuer, ExtendedKeyUsagePurpose::ClientAuth),
    }
}

/// The files of `pki` in `dir`: ca.pem, server.pem, server.key, client.pem, client.key.
fn write_pki(dir: &Path, pki: &Pki) {
    for (name, text) in [
        ("ca.pem", &pki.ca),
        ("server.pem", &pki.server.0),
        ("server.key", &pki.server.1),
        ("client.pem", &pki.client.0),
        ("client.key", &pki.client.1),
    ] {
        std::fs::write(dir.join(name), text).expect("write");
    }
}

fn error_of(yaml: &str, dir: &Path) -> String {
    match WebConfig::parse(yaml, dir) {
        Ok(_) => panic!("accepted: {yaml}"),
        Err(e) => format!("{e:#}"),
    }
}

const TLS: &str = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";

#[test]
fn what_ttmlat_does_not_implement_is_rejected_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pki(dir.path(), &pki());
    for (extra, named) in [
        (
            "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "cipher_suites",
        ),
        ("  curve_preferences: [X25519]\n", "curve_preferences"),
        (
            "  prefer_server_cipher_suites: true\n",
            "prefer_server_cipher_suites",
        ),
        ("  min_version: TLS11\n", "min_version TLS11"),
        (
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: [a]\n",
            "client_allowed_sans",
        ),
        (
            "  client_auth_type: RequireAnyClientCert\n",
            "RequireAnyClientCert",
        ),
    ] {
        let e = error_of(&format!("{TLS}{extra}"), dir.path());
        assert!(
            e.contains(named) && e.contains("not supported"),
            "{extra}: {e}"
        );
    }
    for (yaml, named) in [
        ("rate_limit:\n  burst: 1\n", "rate_limit"),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            "headers",
        ),
        ("http_server_config:\n  http2: true\n", "http2"),
    ] {
        let e = error_of(yaml, dir.path());
        assert!(
            e.contains(named) && e.contains("not supported"),
            "{yaml}: {e}"
        );
    }
    // What exporter-toolkit has never had is an unknown key, named too.
    let e = error_of("tls_server_config:\n  cert_fil: server.pem\n", dir.path());
    assert!(e.contains("cert_fil"), "{e}");
    let e = error_of("basic_auth_user:\n  a: b\n", dir.path());
    assert!(e.contains("basic_auth_user"), "{e}");
}

#[test]
fn bad_files_are_errors_that_say_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    write_pki(dir.path(), &pki);
    // A password where its bcrypt hash belongs.
    let e = error_of("basic_auth_users:\n  prometheus: hunter2\n", dir.path());
    assert!(
        e.contains("prometheus") && e.contains("not a bcrypt hash"),
        "{e}"
    );
    // Certificate of one key, another key.
    std::fs::write(dir.path().join("other.key"), &pki.client.1).expect("write");
    let e = error_of(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: other.key\n",
        dir.path(),
    );
    assert!(e.contains("other.key") && e.contains("server.pem"), "{e}");
    // Unreadable and missing files, and half a pair.
    let e = error_of(
        "tls_server_config:\n  cert_file: nope.pem\n  key_file: server.key\n",
        dir.path(),
    );
    assert!(e.contains("nope.pem"), "{e}");
    let e = error_of("tls_server_config:\n  cert_file: server.pem\n", dir.path());
    assert!(e.contains("key_file"), "{e}");
    let e = error_of(
        "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
        dir.path(),
    );
    assert!(e.contains("no PEM certificate"), "{e}");
    // Client CAs without a policy, and a verifying policy without CAs (exporter-toolkit
    // refuses the first too).
    let e = error_of(&format!("{TLS}  client_ca_file: ca.pem\n"), dir.path());
    assert!(e.contains("client_auth_type"), "{e}");
    let e = error_of(
        &format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
        dir.path(),
    );
    assert!(e.contains("client_ca_file"), "{e}");
    let e = error_of(
        &format!("{TLS}  min_version: TLS13\n  max_version: TLS12\n"),
        dir.path(),
    );
    assert!(e.contains("min_version"), "{e}");
}

#[test]
fn an_expired_certificate_is_a_warning_and_paths_are_the_files_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = KeyPair::generate().expect("key");
    let cert = p.self_signed(&key).expect("sign");
    let sub = dir.path().join("conf");
    std::fs::create_dir(&sub).expect("mkdir");
    std::fs::write(sub.join("server.pem"), cert.pem()).expect("write");
    std::fs::write(sub.join("server.key"), key.serialize_pem()).expect("write");
    let file = sub.join("web.yml");
    std::fs::write(&file, TLS).expect("write");
    // Loaded from elsewhere: server.pem is found next to web.yml.
    let web = WebConfig::load(&file).expect("an expired certificate still loads");
    assert!(web.tls.is_some());
    assert_eq!(web.warnings.len(), 1, "{:?}", web.warnings);
    assert!(web.warnings[0].contains("expired"), "{:?}", web.warnings);
    // Users only: basic auth over plain HTTP, as exporter-toolkit does.
    let hash = bcrypt::hash("pw", 4).expect("hash");
    let web = WebConfig::parse(&format!("basic_auth_users:\n  p: '{hash}'\n"), dir.path())
        .expect("users only");
    assert!(web.tls.is_none() && web.users.len() == 1 && web.warnings.is_empty());
}

/// `ttmlat serve`'s listener and router with `yaml`, on loopback.
async fn server(
    yaml: &str,
    dir: &Path,
) -> (
    std::net::SocketAddr,
    Arc<Metrics>,
    tokio::task::JoinHandle<()>,
) {
    server_with(yaml, dir, Duration::from_secs(5)).await
}

/// [`server`] with a client timeout.
async fn server_with(
    yaml: &str,
    dir: &Path,
    client_timeout: Duration,
) -> (
    std::net::SocketAddr,
    Arc<Metrics>,
    tokio::task::JoinHandle<()>,
) {
    let web = WebConfig::parse(yaml, dir).expect("config");
    let metrics = Arc::new(Metrics::new());
    let (auth, tls) = web.secure(&metrics).expect("auth");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut limited = super::Limited::new(listener, 8, client_timeout);
    if let Some(t) = tls {
        limited = limited.with_tls(t.config, Arc::clone(&metrics));
    }
    let app = super::guarded(super::router(Arc::clone(&metrics)), auth);
    let task = tokio::spawn(async move {
        let _ = axum::serve(limited, app).await;
    });
    (addr, metrics, task)
}

/// A TLS client trusting `ca` (if any), with `client` as its certificate (if any).
fn connector(ca: Option<&str>, client: Option<&(String, String)>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(c.expect("ca")).expect("root");
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("cert"),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
            )
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// GET /metrics over TLS: the status line, or the I/O error (a refused handshake).
async fn get(
    addr: std::net::SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    credentials: Option<(&str, &str)>,
) -> std::io::Result<String> {
    use base64::Engine;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut s = tls.connect(name, tcp).await?;
    let auth = credentials
        .map(|(u, p)| {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Authorization: Basic {b}\r\n")
        })
        .unwrap_or_default();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Ok(text)
}

fn refused(metrics: &Metrics, reason: &str) -> u64 {
    let text = metrics.encode_text().expect("text");
    let prefix = format!("ttmlat_http_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().expect("count"))
}

/// Waits (up to 1 s: the server counts a handshake's failure when it sees it) for `reason`
/// to reach `n`, and requires exactly `n`.
async fn settled(metrics: &Metrics, reason: &str, n: u64) {
    for _ in 0..50 {
        if refused(metrics, reason) == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refused(metrics, reason), n, "{reason}");
}

#[tokio::test]
async fn https_with_basic_auth_serves_the_user_and_refuses_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    write_pki(dir.path(), &pki);
    let hash = bcrypt::hash("s3cret", 4).expect("hash");
    let (addr, metrics, task) = server(
        &format!("{TLS}basic_auth_users:\n  prometheus: '{hash}'\n"),
        dir.path(),
    )
    .await;
    let trusted = connector(Some(&pki.ca), None);
    let ok = get(addr, &trusted, Some(("prometheus", "s3cret")))
        .await
        .expect("scrape");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("\nttmlat_held_waits_total 0"), "{ok}");
    for creds in [
        Some(("prometheus", "wrong")),
        Some(("nobody", "s3cret")),
        None,
    ] {
        let r = get(addr, &trusted, creds).await.expect("answered");
        assert!(r.starts_with("HTTP/1.1 401"), "{creds:?}: {r}");
        assert!(r.contains("www-authenticate: Basic"), "{r}");
    }
    assert_eq!(refused(&metrics, refusal::UNAUTHORIZED), 3);
    // A client that does not trust the CA refuses the server's certificate.
    assert_eq!(refused(&metrics, refusal::TLS_HANDSHAKE), 0);
    let untrusting = connector(None, None);
    assert!(
        get(addr, &untrusting, Some(("prometheus", "s3cret")))
            .await
            .is_err()
    );
    // Plain HTTP to the TLS port is no request either.
    let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("ttmlat_"),
        "served over plain HTTP"
    );
    // Both failed handshakes are counted (the server sees the alert, or the garbage).
    settled(&metrics, refusal::TLS_HANDSHAKE, 2).await;
    // The server still serves.
    let ok = get(addr, &trusted, Some(("prometheus", "s3cret")))
        .await
        .expect("scrape");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    task.abort();
}

#[tokio::test]
async fn client_certificates_are_required_and_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    write_pki(dir.path(), &pki);
    let (addr, metrics, task) = server(
        &format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"),
        dir.path(),
    )
    .await;
    let with_cert = connector(Some(&pki.ca), Some(&pki.client));
    let ok = get(addr, &with_cert, None).await.expect("scrape");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    // Without a certificate, and with one no configured CA signed.
    let other = pki_other_client();
    for client in [None, Some(&other)] {
        let c = connector(Some(&pki.ca), client);
        assert!(
            get(addr, &c, None).await.is_err(),
            "served without a valid client cert"
        );
    }
    settled(&metrics, refusal::TLS_HANDSHAKE, 2).await;
    task.abort();
}

/// A client certificate of another CA.
fn pki_other_client() -> (String, String) {
    pki().client
}

/// htpasswd writes `$2y$` hashes; this one libxcrypt made (perl's `crypt`) for "pw".
const LIBXCRYPT_2Y: &str = "$2y$04$ttmlatlabsaltttmlatlau0zYkBbPNZJE9ZooPj7eHZXs53J6D5Ae";

#[tokio::test]
async fn htpasswd_hashes_and_inline_pem_are_accepted() {
    let pki = pki();
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let yaml = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}basic_auth_users:\n  u: '{LIBXCRYPT_2Y}'\n",
        indent(&pki.server.0),
        indent(&pki.server.1)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, _, task) = server(&yaml, dir.path()).await;
    let trusted = connector(Some(&pki.ca), None);
    let ok = get(addr, &trusted, Some(("u", "pw")))
        .await
        .expect("scrape");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let no = get(addr, &trusted, Some(("u", "pW")))
        .await
        .expect("answered");
    assert!(no.starts_with("HTTP/1.1 401"), "{no}");
    task.abort();
}

#[test]
fn only_an_exposed_address_without_web_config_is_warned_about() {
    let warn = |a: &str, web| super::exposure_warning(a.parse().expect("addr"), web);
    let w = warn("0.0.0.0:10471", false).expect("warned");
    assert!(
        w.contains("plain HTTP") && w.contains("--web-config"),
        "{w}"
    );
    assert!(warn("[::]:10471", false).is_some());
    assert!(warn("0.0.0.0:10471", true).is_none());
    assert!(warn("127.0.0.1:10471", false).is_none());
    assert!(warn("[::1]:10471", false).is_none());
}

/// A client that opens a connection and never sends its ClientHello neither delays others'
/// handshakes (they run in their own connections' tasks) nor holds its slot past the client
/// timeout; its unfinished handshake is counted.
#[tokio::test]
async fn a_stalled_handshake_stalls_no_one_and_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    write_pki(dir.path(), &pki);
    let timeout = Duration::from_millis(600);
    let (addr, metrics, task) = server_with(TLS, dir.path(), timeout).await;
    let mut stalled = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let started = std::time::Instant::now();
    let trusted = connector(Some(&pki.ca), None);
    let ok = get(addr, &trusted, None).await.expect("scrape");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        started.elapsed() < timeout,
        "a scrape waited for the stalled handshake"
    );
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(timeout * 4, stalled.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    settled(&metrics, refusal::TLS_HANDSHAKE, 1).await;
    task.abort();
}
