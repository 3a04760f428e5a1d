//! A minimal HTTP/1.1 client for the Web UI tests: one request per connection (werk answers
//! with `Connection: close`), the whole response read to EOF.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response read to EOF.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy).
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends raw bytes and reads the response to EOF.
pub fn raw(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut s = TcpStream::connect(addr).expect("connect to the web UI");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).expect("write request");
    let mut bytes = Vec::new();
    if let Err(e) = s.read_to_end(&mut bytes) {
        // A server that closes with unread request bytes resets the connection; what arrived
        // before the reset is still the response.
        assert!(
            e.kind() == std::io::ErrorKind::ConnectionReset && !bytes.is_empty(),
            "read response: {e}"
        );
    }
    parse(&bytes)
}

/// Parses a complete response.
#[track_caller]
pub fn parse(bytes: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A request builder: method, path, headers, body.
#[derive(Debug, Clone)]
pub struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    /// `GET path`.
    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }

    /// `POST path` with a form body.
    pub fn post(path: &str, form: &str) -> Req {
        let mut r = Req::new("POST", path);
        r.body = form.to_owned();
        r.header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// Any method.
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Basic auth with any user name.
    pub fn basic(self, user: &str, password: &str) -> Req {
        let token = base64(format!("{user}:{password}").as_bytes());
        self.header("Authorization", &format!("Basic {token}"))
    }

    /// Sends it to `addr` (with `Host` and `Content-Length`).
    pub fn send(&self, addr: SocketAddr) -> HttpResponse {
        let mut text = format!("{} {} HTTP/1.1\r\nHost: {addr}\r\n", self.method, self.path);
        for (n, v) in &self.headers {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        if self.method == "POST" {
            text.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        text.push_str("\r\n");
        text.push_str(&self.body);
        raw(addr, text.as_bytes())
    }
}

/// `GET path`, 200 expected; returns the body.
#[track_caller]
pub fn page(addr: SocketAddr, path: &str) -> String {
    let r = Req::get(path).send(addr);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.body
}

/// The CSRF token a page's forms carry.
#[track_caller]
pub fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in the page"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("closing quote")].to_owned()
}

/// Every `value="..."` of checkboxes named `key` in a page (set entry keys), in page order.
pub fn keys(html: &str) -> Vec<String> {
    html.split("name=\"key\" value=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|k| *k != "all")
        .map(str::to_owned)
        .collect()
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional), with the server's own decoder; panics on other
/// characters.
#[track_caller]
pub fn base64_decode(text: &str) -> Vec<u8> {
    werk::web::http::base64_decode(text).unwrap_or_else(|| panic!("not base64: {text}"))
}

/// The key of the row for `jid` in a set's page (rows carry `data-jid`).
#[track_caller]
pub fn key_of(html: &str, jid: &str) -> String {
    let row = html
        .find(&format!("data-jid=\"{jid}\""))
        .unwrap_or_else(|| panic!("no row for {jid}"));
    keys(&html[row..])
        .into_iter()
        .next()
        .expect("a key in the row")
}
