//! `ttmlat serve --web-config` in the lab: certificates made with openssl and a bcrypt hash
//! made by libxcrypt (perl's `crypt`) inside the guest, independently of ttmlat's own
//! crates; the Prometheus job that scrapes over HTTPS with basic auth; and what is refused.

use anyhow::{Context, Result, ensure};

use crate::lab::LabRun;

/// Where the guest keeps the CA, the server's certificate and key, and the web config.
pub const DIR: &str = "/tmp/tls";
pub const USER: &str = "prometheus";
pub const PASSWORD: &str = "lab-password";

/// How `serve` is reached in a guest script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Http,
    /// TLS with a CA made in the guest, and basic auth.
    Https,
}

impl Transport {
    /// Guest shell: for HTTPS, makes the CA, a certificate for 127.0.0.1 it signs, the bcrypt
    /// hash and `web.yml` (key and config readable by root only), and checks that `serve`
    /// refuses a config with a plain-text password before attaching anything. Then sets
    /// `$SERVE_WEB` (serve's extra arguments), `$SCHEME` and `$CURL` (curl that scrapes).
    pub fn setup(self) -> String {
        match self {
            Transport::Http => "SERVE_WEB=\nSCHEME=http\nCURL='curl -fsS'\n".to_string(),
            Transport::Https => format!(
                r#"mkdir -p {DIR}
( cd {DIR}
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=ttmlat lab CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null
  HASH=$(perl -e 'print crypt($ARGV[0], "\$2b\$05\$ttmlatlabsaltttmlatlau")' '{PASSWORD}')
  case "$HASH" in '$2b$05$'*) ;; *) echo "libxcrypt made no bcrypt hash: $HASH"; exit 8;; esac
  printf 'tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS12\nbasic_auth_users:\n  {USER}: "%s"\n' "$HASH" > web.yml
  printf 'basic_auth_users:\n  {USER}: {PASSWORD}\n' > bad.yml
  chmod 600 ca.key server.key web.yml )
if $TTMLAT serve --web-config {DIR}/bad.yml --ready-file /tmp/bad.ready > $LAB_OUT/bad_config.txt 2>&1; then
    echo "ttmlat serve accepted a plain-text password"; exit 10
fi
[ ! -f /tmp/bad.ready ] || {{ echo "ttmlat serve attached with a bad web config"; exit 10; }}
SERVE_WEB="--web-config {DIR}/web.yml"
SCHEME=https
CURL='curl -fsS --cacert {DIR}/ca.pem -u {USER}:{PASSWORD}'
"#
            ),
        }
    }

    /// The Prometheus job's lines for [`crate::labtest::prometheus_start_with`].
    pub fn prometheus_job(self) -> String {
        match self {
            Transport::Http => String::new(),
            Transport::Https => format!(
                "    scheme: https\n    tls_config:\n      ca_file: {DIR}/ca.pem\n    basic_auth:\n      username: {USER}\n      password: {PASSWORD}\n"
            ),
        }
    }

    /// Guest shell, at the end of the run: for HTTPS, a wrong password, no credentials, and
    /// a client that does not trust the CA, then one more scrape (`scrape_refused.txt`).
    pub fn refusals(self, port: u16) -> String {
        match self {
            Transport::Http => String::new(),
            Transport::Https => format!(
                r#"URL=https://127.0.0.1:{port}/metrics
curl -sS -o /dev/null -w '%{{http_code}}' --cacert {DIR}/ca.pem -u {USER}:wrong $URL > $LAB_OUT/wrong_password.txt
curl -sS -o /dev/null -w '%{{http_code}}' --cacert {DIR}/ca.pem $URL > $LAB_OUT/no_credentials.txt
RC=0; curl -sS -o /dev/null -u {USER}:{PASSWORD} $URL 2> $LAB_OUT/no_ca.txt || RC=$?
echo $RC > $LAB_OUT/no_ca_rc.txt
$CURL $URL > $LAB_OUT/scrape_refused.txt
"#
            ),
        }
    }
}

/// Host side of [`Transport::refusals`] and of the bad config: the refusals happened, and
/// `ttmlat_http_refused_total` (named by `refused`, the exposed family) counted each.
pub fn check_refusals(run: &LabRun, refused: &str) -> Result<()> {
    let read = |name: &str| -> Result<String> {
        std::fs::read_to_string(run.out_dir.join(name))
            .with_context(|| format!("{name} of run {}", run.run_dir.display()))
    };
    let bad = read("bad_config.txt")?;
    ensure!(
        bad.contains("not a bcrypt hash") && !bad.contains("ttmlat: hooks:"),
        "serve with a plain-text password: not refused before the probes loaded:\n{bad}"
    );
    for (file, want) in [("wrong_password.txt", "401"), ("no_credentials.txt", "401")] {
        let got = read(file)?;
        ensure!(got.trim() == want, "{file}: HTTP {got}, not {want}");
    }
    // curl: 60 = the peer's certificate could not be verified.
    let rc = read("no_ca_rc.txt")?;
    ensure!(
        rc.trim() == "60",
        "curl without the CA: exit {} (60 expected): {}",
        rc.trim(),
        read("no_ca.txt")?
    );
    let scrape = read("scrape_refused.txt")?;
    let counts = crate::labtest::series(&scrape, refused, "reason")?;
    let count = |reason: &str| -> Result<f64> {
        counts
            .iter()
            .find(|(r, _)| r == reason)
            .map(|(_, v)| *v)
            .with_context(|| format!("no {refused}{{reason=\"{reason}\"}} sample in the scrape"))
    };
    let (unauthorized, handshakes) = (count("unauthorized")?, count("tls_handshake")?);
    eprintln!("refused: unauthorized {unauthorized}, tls_handshake {handshakes}");
    ensure!(
        unauthorized == 2.0 && handshakes == 1.0,
        "refusals counted: unauthorized {unauthorized} (2 expected), tls_handshake {handshakes} (1 expected)"
    );
    Ok(())
}
