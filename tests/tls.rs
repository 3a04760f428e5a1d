//! TLS on both ports (Faktory's convention: `public.cert.pem` and `private.key.pem` in the config
//! directory), against the real binary, with a real TLS client (rustls): the protocol's HI, HELLO,
//! PUSH, FETCH, ACK; the Web UI over HTTPS; TLS 1.2 and 1.3 accepted, 1.0 and 1.1 refused;
//! plaintext clients get no service; a half-configured directory is a startup error.
//!
//! Certificates are made per test with `rcgen` (a throwaway CA and a leaf for `localhost`).

mod harness;

use harness::{bulk, job, ok, pwdhash, run_to_exit, temp_dir, wait_until, Raw, Werk};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use werk::resp::Frame;

/// A config directory holding a leaf certificate (chain: leaf, CA) and its key; returns the
/// directory and the CA certificate clients should trust.
fn tls_config_dir() -> (PathBuf, CertificateDer<'static>) {
    let dir = temp_dir("tls-config");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "werk test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    std::fs::write(
        dir.join(werk::net::tls::CERT_FILE),
        format!("{}{}", leaf.pem(), ca.pem()),
    )
    .unwrap();
    std::fs::write(dir.join(werk::net::tls::KEY_FILE), leaf_key.serialize_pem()).unwrap();
    (dir, ca.der().clone())
}

fn start_tls(extra_args: &[&str], env: &[(&str, &str)]) -> (Werk, CertificateDer<'static>) {
    let (dir, ca) = tls_config_dir();
    let dir = dir.to_str().unwrap().to_owned();
    let mut args = vec!["-c", dir.as_str()];
    args.extend_from_slice(extra_args);
    let w = Werk::start_with(&args, env);
    assert!(wait_until(Duration::from_secs(5), || w.logged("TLS on")));
    (w, ca)
}

fn client_config(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> Tls {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    StreamOwned::new(ClientConnection::new(config, name).unwrap(), sock)
}

/// Connects a Faktory client over TLS (the harness's raw client on a TLS stream) and reads HI.
fn tls_client(addr: SocketAddr, config: Arc<ClientConfig>) -> (Raw<Tls>, String) {
    Raw::greeted(connect_tls(addr, config))
}

#[test]
fn the_protocol_works_over_tls_1_3_and_1_2() {
    let (w, ca) = start_tls(&[], &[]);
    for (versions, expect) in [
        (
            &[&rustls::version::TLS13][..],
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            &[&rustls::version::TLS12][..],
            rustls::ProtocolVersion::TLSv1_2,
        ),
    ] {
        let (mut c, hi) = tls_client(w.addr, client_config(&ca, versions));
        assert_eq!(hi, r#"HI {"v":2}"#);
        assert_eq!(c.stream.conn.protocol_version(), Some(expect));
        assert_eq!(c.cmd(r#"HELLO {"v":2}"#), ok());
        assert_eq!(c.cmd(&format!("PUSH {}", job("tls-jid-0001", "q"))), ok());
        let fetched = bulk(c.cmd("FETCH q"));
        assert!(fetched.contains(r#""jid":"tls-jid-0001""#), "{fetched}");
        assert_eq!(c.cmd(r#"ACK {"jid":"tls-jid-0001"}"#), ok());
        assert_eq!(c.cmd("FETCH q"), Frame::Bulk(None));
        let info: serde_json::Value = serde_json::from_str(&bulk(c.cmd("INFO"))).unwrap();
        assert!(info["faktory"]["total_processed"].as_u64().unwrap() >= 1);
        // END: the server closes, with close_notify (a cut connection would be a read error).
        c.send_bytes(b"END\r\n");
        let end = c.try_reply();
        assert!(matches!(end, Ok(None)), "no clean close after END: {end:?}");
    }
}

#[test]
fn a_password_challenge_works_over_tls_and_a_big_batch_gets_through() {
    let (w, ca) = start_tls(&[], &[("FAKTORY_PASSWORD", "s3cret")]);
    let (mut c, hi) = tls_client(w.addr, client_config(&ca, rustls::ALL_VERSIONS));
    let hi: serde_json::Value = serde_json::from_str(hi.trim_start_matches("HI ")).unwrap();
    let salt = hi["s"].as_str().unwrap();
    let iterations = hi["i"].as_u64().unwrap();
    let hash = pwdhash("s3cret", salt, iterations);
    assert_eq!(
        c.cmd(&format!(r#"HELLO {{"v":2,"pwdhash":"{hash}"}}"#)),
        ok()
    );
    // Several TLS records each way: a 2000-job batch in, 2000 fetches out in one write.
    let jobs: Vec<String> = (0..2000)
        .map(|i| job(&format!("batch-jid-{i:05}"), "big"))
        .collect();
    let pushed = c.cmd(&format!("PUSHB [{}]", jobs.join(",")));
    assert!(pushed == bulk_empty_map(), "PUSHB refused some jobs");
    let fetches = "FETCH big\r\n".repeat(2000);
    c.send_bytes(fetches.as_bytes());
    for i in 0..2000 {
        let body = bulk(c.reply().expect("a reply per FETCH"));
        assert!(
            body.contains(&format!(r#""jid":"batch-jid-{i:05}""#)),
            "{i}: {body}"
        );
    }
}

fn bulk_empty_map() -> Frame {
    Frame::Bulk(Some(b"{}".to_vec()))
}

/// Reads a whole HTTP response (the server closes after it, with close_notify).
fn https_get(addr: SocketAddr, ca: &CertificateDer<'static>, path: &str, auth: &str) -> String {
    let mut tls = connect_tls(addr, client_config(ca, rustls::ALL_VERSIONS));
    let auth = if auth.is_empty() {
        String::new()
    } else {
        format!("Authorization: Basic {auth}\r\n")
    };
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    // A clean close (close_notify) reads as Ok(0); a cut one would be an UnexpectedEof error.
    tls.read_to_end(&mut out).expect("a complete response");
    String::from_utf8(out).unwrap()
}

#[test]
fn the_web_ui_speaks_https_with_basic_auth() {
    let (w, ca) = start_tls(&[], &[("FAKTORY_PASSWORD", "s3cret")]);
    let web = w.web.expect("web UI on");
    assert!(wait_until(Duration::from_secs(5), || w
        .logged(&format!("web UI on https://{web}"))));
    let denied = https_get(web, &ca, "/", "");
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    // base64("x:s3cret"): any user name, the password.
    let page = https_get(web, &ca, "/", "eDpzM2NyZXQ=");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("</html>"),
        "a whole page: {} bytes",
        page.len()
    );
    let stats = https_get(web, &ca, "/stats", "eDpzM2NyZXQ=");
    assert!(stats.starts_with("HTTP/1.1 200"), "{stats}");
    let body = stats.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(json["faktory"].is_object(), "{json}");
}

/// Reads what the server sends until it closes; panics if it keeps the connection longer.
fn read_until_closed(sock: &mut TcpStream) -> Vec<u8> {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match sock.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
}

#[test]
fn a_plaintext_client_gets_no_service() {
    let (w, ca) = start_tls(&[], &[]);
    // A Faktory client without TLS waits for HI: it gets nothing, and the HELLO deadline
    // closes the connection.
    let started = Instant::now();
    let mut silent = TcpStream::connect(w.addr).unwrap();
    assert_eq!(read_until_closed(&mut silent), b"");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // One that talks anyway gets a TLS alert record (content type 21), then the close.
    let mut talker = TcpStream::connect(w.addr).unwrap();
    talker.write_all(b"HELLO {\"v\":2}\r\nPUSH {}\r\n").unwrap();
    let got = read_until_closed(&mut talker);
    assert!(got.is_empty() || got[0] == 21, "{got:?}");
    assert!(!got.starts_with(b"+"), "{got:?}");
    // Same on the Web UI port: plain HTTP gets no page.
    let mut browser = TcpStream::connect(w.web.unwrap()).unwrap();
    browser
        .write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_until_closed(&mut browser);
    assert!(!got.starts_with(b"HTTP"), "{got:?}");
    // The server goes on serving.
    let (mut c, _) = tls_client(w.addr, client_config(&ca, rustls::ALL_VERSIONS));
    assert_eq!(c.cmd(r#"HELLO {"v":2}"#), ok());
}

/// A minimal ClientHello offering only `version` (no supported_versions extension), as a TLS
/// 1.0 or 1.1 client sends it.
fn old_client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 4, 0x00, 0x2f, 0x00, 0x35]); // AES-CBC-SHA suites
    body.extend_from_slice(&[1, 0]); // null compression
    let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}

#[test]
fn tls_1_1_and_older_are_refused() {
    let (w, ca) = start_tls(&[], &[]);
    for version in [[3, 1], [3, 2]] {
        let mut sock = TcpStream::connect(w.addr).unwrap();
        sock.write_all(&old_client_hello(version)).unwrap();
        let got = read_until_closed(&mut sock);
        // One fatal alert (level 2): protocol_version (70) or handshake_failure (40).
        assert!(got.len() >= 7 && got[0] == 21, "{version:?}: {got:?}");
        assert_eq!(got[5], 2, "{got:?}");
        assert!([70, 40].contains(&got[6]), "{got:?}");
    }
    // The server still serves a good client afterwards.
    let (mut c, _) = tls_client(w.addr, client_config(&ca, rustls::ALL_VERSIONS));
    assert_eq!(c.cmd(r#"HELLO {"v":2}"#), ok());
}

#[test]
fn a_client_that_does_not_trust_the_certificate_fails_and_the_server_goes_on() {
    let (w, ca) = start_tls(&[], &[]);
    let (_, other_ca) = tls_config_dir();
    let mut bad = connect_tls(w.addr, client_config(&other_ca, rustls::ALL_VERSIONS));
    let mut buf = [0u8; 16];
    assert!(bad.read(&mut buf).is_err());
    let (mut c, _) = tls_client(w.addr, client_config(&ca, rustls::ALL_VERSIONS));
    assert_eq!(c.cmd(r#"HELLO {"v":2}"#), ok());
    assert_eq!(c.cmd("FLUSH"), ok());
}

fn config_dir_with(files: &[(&str, &[u8])]) -> PathBuf {
    let (dir, _) = tls_config_dir();
    for name in [werk::net::tls::CERT_FILE, werk::net::tls::KEY_FILE] {
        std::fs::remove_file(dir.join(name)).unwrap();
    }
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    dir
}

fn startup_error(config_dir: &Path) -> String {
    let data = temp_dir("tls-data");
    let (status, stderr) = run_to_exit(&[
        "-c",
        config_dir.to_str().unwrap(),
        "-d",
        data.to_str().unwrap(),
    ]);
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn one_file_without_the_other_or_a_bad_file_is_a_startup_error() {
    let (full, _) = tls_config_dir();
    let cert = std::fs::read(full.join(werk::net::tls::CERT_FILE)).unwrap();
    let key = std::fs::read(full.join(werk::net::tls::KEY_FILE)).unwrap();

    let dir = config_dir_with(&[(werk::net::tls::CERT_FILE, &cert)]);
    let e = startup_error(&dir);
    assert!(e.contains("private.key.pem is not"), "{e}");

    let dir = config_dir_with(&[(werk::net::tls::KEY_FILE, &key)]);
    let e = startup_error(&dir);
    assert!(e.contains("public.cert.pem is not"), "{e}");

    let dir = config_dir_with(&[
        (werk::net::tls::CERT_FILE, &cert),
        (werk::net::tls::KEY_FILE, b"junk"),
    ]);
    let e = startup_error(&dir);
    assert!(
        e.contains("cannot start") && e.contains("private.key.pem"),
        "{e}"
    );
}

#[test]
fn without_the_files_tls_is_off() {
    let w = Werk::start();
    assert!(wait_until(Duration::from_secs(5), || w.logged("TLS off")));
    let web = w.web.unwrap();
    assert!(wait_until(Duration::from_secs(5), || w
        .logged(&format!("web UI on http://{web}"))));
}

/// The `faktory` crate's own TLS (its `rustls` feature, on rustls 0.22), trusting the test CA:
/// a producer and a worker connect, with a password, and a job goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faktory_crate_speaks_tls_to_werk() {
    use faktory::rustls::TlsStream;
    use faktory::{Client, Job, JobBuilder, Worker};
    use tokio::io::BufStream;

    let (w, ca) = start_tls(&[], &[("FAKTORY_PASSWORD", "s3cret")]);
    let mut roots = rustls022::RootCertStore::empty();
    roots.add(ca).unwrap();
    let config = rustls022::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // This crate takes `tcp://` only (`tcp+tls://` is a BadScheme): TLS is chosen by using its
    // TlsStream. Go and Ruby clients take `tcp+tls://` instead.
    let url = format!("tcp://:s3cret@localhost:{}", w.addr.port());

    let stream = TlsStream::with_client_config(config.clone(), Some(&url))
        .await
        .expect("TLS connect");
    let mut producer = Client::connect_with(BufStream::new(stream), Some("s3cret".into()))
        .await
        .expect("HELLO over TLS");
    let job = JobBuilder::new("tls-kind")
        .args(vec!["over TLS"])
        .queue("tq")
        .build();
    let jid = job.id().clone();
    producer.enqueue(job).await.unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = TlsStream::with_client_config(config, Some(&url))
        .await
        .expect("TLS connect");
    let mut worker = Worker::builder::<std::io::Error>()
        .register_fn("tls-kind", move |job: Job| {
            let tx = tx.clone();
            async move {
                tx.send(job.id().clone()).expect("receiver alive");
                Ok(())
            }
        })
        .connect_with(BufStream::new(stream), Some("s3cret".into()))
        .await
        .expect("worker HELLO over TLS");
    assert!(worker.run_one(0, &["tq"]).await.unwrap(), "no job fetched");
    assert_eq!(rx.try_recv().unwrap(), jid);
    let info = producer.current_info().await.unwrap();
    assert!(info.data.total_processed >= 1);
}

/// A crowd of new TLS clients: 100 ClientHellos sent back to back. werk reads at most
/// `TLS_HANDSHAKE_READS_PER_TURN` (32) connections in their handshake per loop turn and leaves
/// the rest to the next turns (logged at debug), so one turn does not do 100 key exchanges while
/// every other client waits; each handshake still completes, and each client gets its HI.
#[test]
fn a_crowd_of_tls_handshakes_is_spread_over_loop_turns_and_each_completes() {
    const CLIENTS: usize = 100;
    let (w, ca) = start_tls(&["-l", "debug"], &[]);
    let config = client_config(&ca, &[&rustls::version::TLS13]);
    let mut clients: Vec<Tls> = (0..CLIENTS)
        .map(|_| connect_tls(w.addr, config.clone()))
        .collect();
    // Every ClientHello is on its way before any client reads the server's answer.
    for c in &mut clients {
        c.conn.write_tls(&mut c.sock).unwrap();
    }
    for c in clients {
        let (mut raw, hi) = Raw::greeted(c);
        assert_eq!(hi, r#"HI {"v":2}"#);
        assert!(!raw.stream.conn.is_handshaking());
        assert_eq!(raw.cmd(r#"HELLO {"v":2}"#), ok());
    }
    assert!(
        w.logged(&format!(
            "TLS handshake waits for the next turn ({} handshake reads this turn)",
            werk::net::TLS_HANDSHAKE_READS_PER_TURN
        )),
        "the budget never ran out"
    );
}

/// The handshake budget counts reads that found something to process: a new connection is read
/// once when accepted, and a client that has not sent its ClientHello yet costs no key exchange.
/// 40 connections accepted in one turn (queued while werk was stopped), none of them sending a
/// byte, must not use up the budget and push real handshakes to later turns.
#[test]
fn silent_new_connections_do_not_use_up_the_tls_handshake_budget() {
    let (w, ca) = start_tls(&["-l", "debug"], &[]);
    w.signal("STOP");
    let silent: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(w.addr).unwrap())
        .collect();
    w.signal("CONT");
    let config = client_config(&ca, &[&rustls::version::TLS13]);
    let (mut raw, hi) = tls_client(w.addr, config);
    assert_eq!(hi, r#"HI {"v":2}"#);
    assert_eq!(raw.cmd(r#"HELLO {"v":2}"#), ok());
    assert!(
        !w.logged("TLS handshake waits for the next turn"),
        "reads that found nothing used up the handshake budget"
    );
    drop(silent);
}
