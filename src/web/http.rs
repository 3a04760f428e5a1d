//! HTTP/1.1 for the Web UI: one request per connection, parsed with `httparse` from the
//! connection's read buffer, and responses encoded into its write buffer.
//!
//! Everything is bounded before it is buffered: the request head ([`HEAD_BYTES_MAX`]), the number
//! of headers ([`HEADERS_MAX`]), the body ([`BODY_BYTES_MAX`]), and the number of form or query
//! fields ([`FIELDS_MAX`]). Chunked request bodies are refused (browsers send forms with a
//! `Content-Length`). Every response says `Connection: close`: the loop closes the connection once
//! the response is written, so a client holds a connection for one request at most, and never
//! longer than the loop's request deadline.

use std::fmt;

/// Longest request head (request line and headers), in bytes.
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Most request headers.
pub const HEADERS_MAX: usize = 64;
/// Longest request body, in bytes.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Most fields in a query string or a form body.
pub const FIELDS_MAX: usize = 1000;

/// The request methods the Web UI serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET (and HEAD, answered without a body).
    Get,
    /// POST: every state-changing action.
    Post,
    /// Anything else (answered 405).
    Other,
}

/// A complete request, copied out of the read buffer (small: the head is bounded).
#[derive(Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// True for HEAD (a GET whose body is not sent).
    pub head_only: bool,
    /// The path, percent-decoded, without the query.
    pub path: String,
    /// The raw query string (after `?`), empty when absent.
    pub query: String,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// `Host` header.
    pub host: Option<String>,
    /// `Origin` header.
    pub origin: Option<String>,
    /// `Sec-Fetch-Site` header.
    pub sec_fetch_site: Option<String>,
    /// The body (a form, for POST).
    pub body: Vec<u8>,
}

/// Why a request cannot be served; each maps to one status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request line or header (400).
    BadRequest,
    /// Head over [`HEAD_BYTES_MAX`] or more than [`HEADERS_MAX`] headers (431).
    HeadTooLarge,
    /// Body over [`BODY_BYTES_MAX`] (413).
    BodyTooLarge,
    /// `Transfer-Encoding` on a request (501).
    Chunked,
}

impl HttpError {
    /// The status code.
    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequest => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::Chunked => 501,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpError::BadRequest => "malformed request",
            HttpError::HeadTooLarge => "request head too large",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::Chunked => "chunked request bodies are not supported",
        })
    }
}

impl std::error::Error for HttpError {}

/// Parses one request from the start of `buf`: `Ok(None)` when more bytes are needed.
///
/// httparse re-reads the head from the start on each call; the head is bounded by
/// [`HEAD_BYTES_MAX`], so a client trickling bytes costs at most that much work per read.
pub fn parse(buf: &[u8]) -> Result<Option<Request>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= HEAD_BYTES_MAX => n,
        Ok(httparse::Status::Complete(_)) => return Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Partial) if buf.len() >= HEAD_BYTES_MAX => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::BadRequest),
    };
    let mut out = Request {
        method: Method::Other,
        head_only: false,
        path: String::new(),
        query: String::new(),
        authorization: None,
        host: None,
        origin: None,
        sec_fetch_site: None,
        body: Vec::new(),
    };
    (out.method, out.head_only) = match req.method {
        Some("GET") => (Method::Get, false),
        Some("HEAD") => (Method::Get, true),
        Some("POST") => (Method::Post, false),
        _ => (Method::Other, false),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    out.path = percent_decode(path.as_bytes(), false).ok_or(HttpError::BadRequest)?;
    out.query = query.to_owned();
    let mut content_length = 0usize;
    for h in req.headers.iter() {
        let value = || {
            std::str::from_utf8(h.value)
                .map(|v| v.trim().to_owned())
                .map_err(|_| HttpError::BadRequest)
        };
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "authorization" => out.authorization = Some(value()?),
            "host" => out.host = Some(value()?),
            "origin" => out.origin = Some(value()?),
            "sec-fetch-site" => out.sec_fetch_site = Some(value()?),
            "transfer-encoding" => return Err(HttpError::Chunked),
            "content-length" => {
                content_length = value()?.parse().map_err(|_| HttpError::BadRequest)?;
            }
            _ => {}
        }
    }
    if content_length > BODY_BYTES_MAX {
        return Err(HttpError::BodyTooLarge);
    }
    let Some(body) = buf.get(head_len..head_len + content_length) else {
        return Ok(None);
    };
    out.body = body.to_vec();
    Ok(Some(out))
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); `None` when the result is
/// not UTF-8 or an escape is malformed.
pub fn percent_decode(text: &[u8], plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'%' => {
                let hi = hex_value(*text.get(i + 1)?)?;
                let lo = hex_value(*text.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Escapes text for a URL query value or path segment (unreserved characters pass).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decoded `name=value` pairs of a query string or an `application/x-www-form-urlencoded`
/// body, in order (names may repeat). `None` when malformed or over [`FIELDS_MAX`] fields.
pub fn parse_form(text: &[u8]) -> Option<Vec<(String, String)>> {
    let mut fields = Vec::new();
    for pair in text.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        if fields.len() == FIELDS_MAX {
            return None;
        }
        let mut it = pair.splitn(2, |&b| b == b'=');
        let name = percent_decode(it.next().unwrap_or_default(), true)?;
        let value = percent_decode(it.next().unwrap_or_default(), true)?;
        fields.push((name, value));
    }
    Some(fields)
}

/// The first value of field `name`.
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Decodes standard base64 (with or without padding); `None` on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes().filter(|&b| b != b'=') {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A response to encode.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers (`Location`, `Cache-Control`, `WWW-Authenticate`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The policy every page is served under: nothing loads from anywhere but this server, no
/// inline script, and no framing (clickjacking).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

impl Response {
    /// A response with a body.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            body.into().into_bytes(),
        )
    }

    /// `303 See Other` to `location` (after a POST, so a reload does not repeat it).
    pub fn see_other(location: String) -> Response {
        Response::text(303, "").header("Location", location)
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Appends the encoded response to `out`; `head_only` leaves the body out (HEAD).
    pub fn encode(&self, out: &mut Vec<u8>, head_only: bool) {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
             X-Content-Type-Options: nosniff\r\nReferrer-Policy: same-origin\r\n\
             Content-Security-Policy: {CONTENT_SECURITY_POLICY}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
        );
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM_POST: &[u8] = b"POST /retries HTTP/1.1\r\nHost: h:1\r\nOrigin: http://h:1\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\n\
        action=retry&key=1-2";

    #[test]
    fn a_request_is_complete_only_at_every_byte_of_its_body() {
        for split in 0..FORM_POST.len() {
            assert!(
                parse(&FORM_POST[..split]).unwrap().is_none(),
                "complete at {split}"
            );
        }
        let req = parse(FORM_POST).unwrap().unwrap();
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.path, "/retries");
        assert_eq!(req.origin.as_deref(), Some("http://h:1"));
        assert_eq!(req.body, b"action=retry&key=1-2");
    }

    #[test]
    fn path_query_and_methods() {
        let req = parse(b"GET /queues/a%2Eb?page=2&x=%20 HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((req.method, req.head_only), (Method::Get, false));
        assert_eq!(req.path, "/queues/a.b");
        assert_eq!(req.query, "page=2&x=%20");
        let req = parse(b"HEAD / HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!((req.method, req.head_only), (Method::Get, true));
        let req = parse(b"DELETE / HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(req.method, Method::Other);
    }

    #[test]
    fn limits_and_errors() {
        let cases: &[(Vec<u8>, HttpError)] = &[
            (b"GARBAGE\r\n\r\n".to_vec(), HttpError::BadRequest),
            (b"GET /%zz HTTP/1.1\r\n\r\n".to_vec(), HttpError::BadRequest),
            (
                b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n".to_vec(),
                HttpError::BadRequest,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                HttpError::Chunked,
            ),
            (
                format!(
                    "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                    BODY_BYTES_MAX + 1
                )
                .into_bytes(),
                HttpError::BodyTooLarge,
            ),
            (
                format!(
                    "GET / HTTP/1.1\r\n{}\r\n",
                    "A: b\r\n".repeat(HEADERS_MAX + 1)
                )
                .into_bytes(),
                HttpError::HeadTooLarge,
            ),
            (
                format!("GET /{} HTTP/1.1\r\n", "a".repeat(HEAD_BYTES_MAX)).into_bytes(),
                HttpError::HeadTooLarge,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes).err(),
                Some(*want),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        // Just under the head limit is still waiting for more.
        let almost = format!("GET /{}", "a".repeat(HEAD_BYTES_MAX - 10));
        assert!(parse(almost.as_bytes()).unwrap().is_none());
    }

    /// Random bytes and mutated requests, at every length: the parsers return, never panic.
    #[test]
    fn arbitrary_input_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..300 {
            let mut bytes = FORM_POST.to_vec();
            for _ in 0..(round % 8) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            if round % 3 == 0 {
                bytes = (0..(next() % 200)).map(|_| next() as u8).collect();
            }
            for end in 0..=bytes.len() {
                let _ = parse(&bytes[..end]);
            }
            let _ = parse_form(&bytes);
            let _ = percent_decode(&bytes, true);
            let _ = base64_decode(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn forms_and_encodings() {
        let f = parse_form(b"key=1-2&key=3-4&q=a+b%26c&empty=&flag").unwrap();
        assert_eq!(field(&f, "q"), Some("a b&c"));
        assert_eq!(field(&f, "empty"), Some(""));
        assert_eq!(field(&f, "flag"), Some(""));
        assert_eq!(f.iter().filter(|(n, _)| n == "key").count(), 2);
        assert!(parse_form(b"a=%").is_none());
        assert!(parse_form(b"a=%ff").is_none(), "not UTF-8");
        let many = "a=1&".repeat(FIELDS_MAX + 1);
        assert!(parse_form(many.as_bytes()).is_none());
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(
            percent_decode(percent_encode("x?&=+ y").as_bytes(), true).as_deref(),
            Some("x?&=+ y")
        );
        assert_eq!(base64_decode("OnNlY3JldA==").unwrap(), b":secret");
        assert_eq!(base64_decode("dXNlcjpwdw").unwrap(), b"user:pw");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn responses_say_close_and_carry_security_headers() {
        let mut out = Vec::new();
        Response::see_other("/retries".into()).encode(&mut out, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 303 See Other\r\n"), "{text}");
        assert!(text.contains("\r\nLocation: /retries\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains("frame-ancestors 'none'"));
        let mut out = Vec::new();
        Response::text(200, "hello").encode(&mut out, true);
        assert!(out.ends_with(b"Content-Length: 5\r\n".as_slice()) || !out.ends_with(b"hello"));
    }
}
