//! TLS on both ports against the real binary: with `public.cert.pem` and `private.key.pem` in
//! the config directory (Faktory's convention), a rustls client speaks the Faktory protocol over
//! TLS 1.3 and 1.2, the Web UI answers over HTTPS, a plain-text client gets no service, and a
//! lone certificate is a startup error.

mod harness;

use harness::{run_to_exit, temp_dir, Werk};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A config directory with a self-signed certificate for localhost and 127.0.0.1; returns the
/// certificate (DER) for the client's trust store.
fn config_dir(
    tag: &str,
) -> (
    std::path::PathBuf,
    rustls::pki_types::CertificateDer<'static>,
) {
    let dir = temp_dir(tag);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    std::fs::write(dir.join("public.cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("private.key.pem"), cert.key_pair.serialize_pem()).unwrap();
    (dir, cert.cert.der().clone())
}

fn client_config(
    cert: &rustls::pki_types::CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Tls = BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    BufReader::new(rustls::StreamOwned::new(conn, tcp))
}

fn line(s: &mut Tls) -> String {
    let mut l = String::new();
    s.read_line(&mut l).expect("read over TLS");
    l.trim_end().to_owned()
}

fn cmd(s: &mut Tls, text: &str) -> String {
    s.get_mut()
        .write_all(format!("{text}\r\n").as_bytes())
        .unwrap();
    s.get_mut().flush().unwrap();
    line(s)
}

fn start(conf: &Path) -> Werk {
    let w = Werk::start_with(&["-c", conf.to_str().unwrap()], &[]);
    assert!(
        wait(|| w.logged("web UI on https://")),
        "the log says the Web UI speaks https"
    );
    w
}

fn wait(mut f: impl FnMut() -> bool) -> bool {
    harness::wait_until(Duration::from_secs(5), &mut f)
}

#[test]
fn the_protocol_works_over_tls_1_3_and_1_2() {
    let (conf, cert) = config_dir("tls-proto");
    let w = start(&conf);
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let mut s = connect(w.addr, client_config(&cert, versions));
        let hi = line(&mut s);
        assert!(hi.starts_with("+HI {"), "{hi}");
        assert_eq!(cmd(&mut s, r#"HELLO {"v":2,"wid":"tls1"}"#), "+OK");
        let job = r#"PUSH {"jid":"tlsjob0001","jobtype":"T","args":[1],"queue":"tls"}"#;
        assert_eq!(cmd(&mut s, job), "+OK");
        let head = cmd(&mut s, "FETCH tls");
        assert!(head.starts_with('$'), "{head}");
        let body = line(&mut s);
        assert!(body.contains("tlsjob0001"), "{body}");
        assert_eq!(cmd(&mut s, r#"ACK {"jid":"tlsjob0001"}"#), "+OK");
        let version = s.get_ref().conn.protocol_version();
        assert_eq!(version, Some(versions[0].version));
    }
    drop(w);
    std::fs::remove_dir_all(conf).unwrap();
}

#[test]
fn the_web_ui_answers_over_https() {
    let (conf, cert) = config_dir("tls-web");
    let w = start(&conf);
    let web = w.web.expect("web address");
    let mut s = connect(web, client_config(&cert, &[&rustls::version::TLS13]));
    s.get_mut()
        .write_all(b"GET /stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"faktory\""), "{response}");
    drop(w);
    std::fs::remove_dir_all(conf).unwrap();
}

#[test]
fn plain_text_on_a_tls_port_gets_no_service() {
    let (conf, _) = config_dir("tls-plain");
    let w = start(&conf);
    let mut tcp = TcpStream::connect(w.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"HELLO {\"v\":2}\r\nINFO\r\n").unwrap();
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("HI"),
        "plain text was answered: {got:?}"
    );
    // The server goes on serving TLS clients.
    assert!(w.logged("listening on"));
    drop(w);
    std::fs::remove_dir_all(conf).unwrap();
}

#[test]
fn a_certificate_without_its_key_is_a_startup_error() {
    let (conf, _) = config_dir("tls-half");
    std::fs::remove_file(conf.join("private.key.pem")).unwrap();
    let data = temp_dir("tls-half-data");
    let (status, stderr) = run_to_exit(&[
        "-c",
        conf.to_str().unwrap(),
        "-d",
        data.to_str().unwrap(),
        "-w",
        "off",
    ]);
    assert!(!status.success());
    assert!(stderr.contains("private.key.pem is not"), "{stderr}");
    std::fs::remove_dir_all(conf).unwrap();
    std::fs::remove_dir_all(data).unwrap();
}
