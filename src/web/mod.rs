//! The Web UI, `/stats`, `/health`, `/debug` and `/metrics`, served on the Web UI port by the
//! same event loop as the protocol.
//!
//! `net` accepts the connection, buffers the request and calls [`handle`] with the parsed
//! [`Request`]; this module reads the core through its query functions (the ones INFO and MUTATE
//! use) and changes it only through its action functions, which journal every change. `net`
//! then holds the response until those records are durable, exactly like a protocol reply.
//! This module never touches a socket, a file or a clock.
//!
//! Security, in order: HTTP Basic auth when a password is set (any user name, the server's
//! password, compared in constant time); then, for every POST, a same-origin check
//! (`Sec-Fetch-Site`, `Origin` against `Host`) and a per-process CSRF token carried in a hidden
//! form field, also compared in constant time. Every parameter is validated and bounded, and
//! everything that comes from a job is HTML-escaped.

pub mod http;
mod metrics;
mod pages;

use crate::auth::constant_time_eq;
use crate::clock::Now;
use crate::core::{Core, Selection, SetAction, SetKey, SetName, WorkerState};
use crate::histogram::Histogram;
pub use http::{HttpError, Method, Request, Response};
use std::net::SocketAddr;

/// Jobs per page in lists.
pub const PAGE_SIZE: usize = 25;
/// Highest page number accepted.
pub const PAGE_MAX: usize = 100_000;
/// Longest search text, in bytes.
pub const SEARCH_BYTES_MAX: usize = 200;
/// Most set entries one search looks at.
pub const SEARCH_SCAN_MAX: usize = 200_000;
/// Most keys one POST may select.
pub const KEYS_MAX: usize = 500;
/// The history chart's allowed ranges, in days (Faktory 1.x took any `days`: CVE-2023-37279).
pub const HISTORY_DAYS: [usize; 4] = [7, 30, 90, 180];

/// Facts about the server that live outside the core (the loop and the journal own them).
#[derive(Debug)]
pub struct ServerFacts<'a> {
    /// The protocol listener.
    pub protocol_addr: SocketAddr,
    /// Open Web UI connections.
    pub web_connections: usize,
    /// Most Web UI connections.
    pub web_connections_max: usize,
    /// The Web UI request deadline.
    pub web_request_timeout_ms: u64,
    /// The journal file.
    pub journal_path: String,
    /// Its size.
    pub journal_bytes: u64,
    /// The last durable batch.
    pub journal_durable: u64,
    /// Why the journal refuses writes, if it does.
    pub journal_failed: Option<&'a str>,
    /// `always` or `none`.
    pub sync_policy: &'static str,
    /// Time taken by each journal fsync.
    pub sync_latency: &'a Histogram,
    /// Poll events found by `--sync-gather`'s extra looks.
    pub sync_gathered: u64,
}

/// What every request is checked against.
#[derive(Debug)]
pub struct WebContext<'a> {
    /// The password, when one is set.
    pub password: Option<&'a str>,
    /// This process's CSRF token.
    pub csrf_token: &'a str,
    /// The loop's facts.
    pub facts: ServerFacts<'a>,
}

/// Serves one request. A POST that changes state changes it through the core's action
/// functions; the caller holds the response until their journal records are durable.
pub fn handle(core: &mut Core, req: &Request, ctx: &WebContext<'_>, now: Now) -> Response {
    if let Some(refusal) = check_auth(req, ctx.password) {
        return refusal;
    }
    match req.method {
        Method::Get => get(core, req, ctx, now).unwrap_or_else(|e| e),
        Method::Post => post(core, req, ctx, now).unwrap_or_else(|e| e),
        Method::Other => Response::text(405, "method not allowed").header("Allow", "GET, POST"),
    }
}

/// The refusal for a request without the right password, or `None` when it may go on.
fn check_auth(req: &Request, password: Option<&str>) -> Option<Response> {
    let password = password?;
    let given = req
        .authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b64| http::base64_decode(b64.trim()))
        .and_then(|raw| String::from_utf8(raw).ok());
    let (status, text) = match given {
        None => (401, "Authorization required"),
        Some(userpass) => {
            // Any user name, as Faktory: only the password counts.
            let pw = userpass.split_once(':').map_or("", |(_, p)| p);
            if constant_time_eq(pw.as_bytes(), password.as_bytes()) {
                return None;
            }
            (401, "Authorization failed")
        }
    };
    Some(Response::text(status, text).header(
        "WWW-Authenticate",
        "Basic realm=\"werk\", charset=\"UTF-8\"",
    ))
}

/// Refuses a POST that another site could have made: `Sec-Fetch-Site` other than same-origin,
/// an `Origin` that is not this server's, or a missing or wrong CSRF token.
fn check_csrf(req: &Request, form: &[(String, String)], token: &str) -> Result<(), Response> {
    let forbidden = |why: &str| Response::text(403, format!("forbidden: {why}"));
    if let Some(site) = req.sec_fetch_site.as_deref() {
        if !matches!(site, "same-origin" | "none") {
            return Err(forbidden("cross-site request"));
        }
    }
    if let Some(origin) = req.origin.as_deref() {
        let host = req.host.as_deref().unwrap_or_default();
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host));
        if !same {
            return Err(forbidden("cross-origin request"));
        }
    }
    let given = http::field(form, "csrf").unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Err(forbidden("missing or invalid CSRF token; reload the page"));
    }
    Ok(())
}

fn bad(text: impl Into<String>) -> Response {
    Response::text(400, text)
}

fn not_found() -> Response {
    Response::text(404, "not found")
}

/// Validated query parameters of a GET.
#[derive(Debug)]
struct Params {
    page: usize,
    search: String,
    days: usize,
}

fn params(query: &str) -> Result<Params, Response> {
    let fields = http::parse_form(query.as_bytes()).ok_or_else(|| bad("malformed query"))?;
    let mut p = Params {
        page: 1,
        search: String::new(),
        days: 30,
    };
    if let Some(v) = http::field(&fields, "page") {
        p.page = v
            .parse()
            .ok()
            .filter(|n| (1..=PAGE_MAX).contains(n))
            .ok_or_else(|| bad(format!("page must be a number from 1 to {PAGE_MAX}")))?;
    }
    if let Some(v) = http::field(&fields, "q") {
        if v.len() > SEARCH_BYTES_MAX {
            return Err(bad(format!(
                "search text is limited to {SEARCH_BYTES_MAX} bytes"
            )));
        }
        p.search = v.trim().to_owned();
    }
    if let Some(v) = http::field(&fields, "days") {
        p.days = v
            .parse()
            .ok()
            .filter(|d| HISTORY_DAYS.contains(d))
            .ok_or_else(|| bad("days must be 7, 30, 90 or 180"))?;
    }
    Ok(p)
}

/// The set a path prefix names, with the name its pages use.
fn set_of(segment: &str) -> Option<SetName> {
    match segment {
        "retries" => Some(SetName::Retries),
        "scheduled" => Some(SetName::Scheduled),
        "morgue" => Some(SetName::Dead),
        _ => None,
    }
}

fn get(core: &Core, req: &Request, ctx: &WebContext<'_>, now: Now) -> Result<Response, Response> {
    let p = params(&req.query)?;
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let page = |html: String| Ok(Response::new(200, "text/html; charset=utf-8", html));
    let v = pages::View {
        core,
        ctx,
        now,
        csrf: ctx.csrf_token,
    };
    match segments.as_slice() {
        [""] => page(v.dashboard(p.days)),
        ["busy"] => page(v.busy()),
        ["queues"] => page(v.queues()),
        ["queues", name] => match core.queue_ref(name) {
            Some(_) => page(v.queue(name, p.page)),
            None => Err(not_found()),
        },
        [set, key] if set_of(set).is_some() => {
            let set = set_of(set).ok_or_else(not_found)?;
            let key = SetKey::from_token(key).ok_or_else(not_found)?;
            match core.set_entry(set, &key) {
                Some(job) => page(v.set_entry(set, &key, job)),
                None => Err(not_found()),
            }
        }
        [set] if set_of(set).is_some() => {
            let set = set_of(set).ok_or_else(not_found)?;
            page(v.set_list(set, &p.search, p.page))
        }
        ["debug"] => page(v.debug()),
        ["stats"] => Ok(Response::new(200, "application/json", core.info_json(now))
            .header("Cache-Control", "no-cache")),
        ["health"] => Ok(
            Response::new(200, "application/json", health_json(core, now))
                .header("Cache-Control", "no-cache"),
        ),
        ["metrics"] => Ok(Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(core, &ctx.facts, now),
        )),
        ["static", "werk.css"] => Ok(Response::new(
            200,
            "text/css; charset=utf-8",
            include_str!("assets/werk.css"),
        )
        .header("Cache-Control", "max-age=3600")),
        ["static", "werk.js"] => Ok(Response::new(
            200,
            "text/javascript; charset=utf-8",
            include_str!("assets/werk.js"),
        )
        .header("Cache-Control", "max-age=3600")),
        _ => Err(not_found()),
    }
}

/// Faktory's `/health` shape.
fn health_json(core: &Core, now: Now) -> Vec<u8> {
    let doc = serde_json::json!({
        "now": now.wall.to_rfc3339(),
        "server": {
            "description": "Faktory",
            "faktory_version": crate::core::FAKTORY_COMPAT_VERSION,
            "werk_version": env!("CARGO_PKG_VERSION"),
            "connections": core.connections(),
            "command_count": core.stats().command_count,
        },
    });
    serde_json::to_vec(&doc).unwrap_or_else(|_| b"{}".to_vec())
}

fn post(
    core: &mut Core,
    req: &Request,
    ctx: &WebContext<'_>,
    now: Now,
) -> Result<Response, Response> {
    let form = http::parse_form(&req.body).ok_or_else(|| bad("malformed form"))?;
    check_csrf(req, &form, ctx.csrf_token)?;
    if let Some(why) = ctx.facts.journal_failed {
        return Err(Response::text(
            503,
            format!("journal unavailable, writes refused: {why}"),
        ));
    }
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["busy"] => post_busy(core, &form),
        ["queues", name] => post_queue(core, name, &form, now),
        [set] if set_of(set).is_some() => post_set(core, set, None, &form, now),
        [set, key] if set_of(set).is_some() => post_set(core, set, Some(key), &form, now),
        ["queues"] | ["stats"] | ["health"] | ["metrics"] | ["debug"] | [""] => {
            Err(Response::text(405, "get only").header("Allow", "GET"))
        }
        _ => Err(not_found()),
    }
}

/// `POST /busy`: `wid=<wid>|all`, `signal=quiet|terminate`.
fn post_busy(core: &mut Core, form: &[(String, String)]) -> Result<Response, Response> {
    let wid = http::field(form, "wid").unwrap_or_default();
    let state = match http::field(form, "signal") {
        Some("quiet") => WorkerState::Quiet,
        Some("terminate") => WorkerState::Terminate,
        _ => return Err(bad("signal must be quiet or terminate")),
    };
    if wid.is_empty() {
        return Err(bad("wid is required (a worker id, or all)"));
    }
    let n = core.signal_worker(wid, state);
    log::info!(
        "web: signalled {} to {n} worker(s) matching {wid:?}",
        state.as_str()
    );
    Ok(Response::see_other("/busy".into()))
}

/// `POST /queues/NAME`: `action=pause|resume|delete`.
fn post_queue(
    core: &mut Core,
    name: &str,
    form: &[(String, String)],
    now: Now,
) -> Result<Response, Response> {
    let action = http::field(form, "action").unwrap_or_default();
    let done = match action {
        "pause" => core.pause_queue(name, true, now),
        "resume" => core.pause_queue(name, false, now),
        "delete" | "clear" => core.remove_queue(name).is_some(),
        _ => return Err(bad("action must be pause, resume or delete")),
    };
    if !done {
        return Err(not_found());
    }
    log::info!("web: queue {name:?}: {action}");
    let back = if action == "pause" || action == "resume" {
        format!("/queues/{}", http::percent_encode(name))
    } else {
        "/queues".to_owned()
    };
    Ok(Response::see_other(back))
}

/// `POST /retries`, `/scheduled`, `/morgue` (and `/.../KEY`): `key=<key>` (repeatable) or
/// `key=all` with `q=<search>`, and `action`.
fn post_set(
    core: &mut Core,
    set: &str,
    path_key: Option<&str>,
    form: &[(String, String)],
    now: Now,
) -> Result<Response, Response> {
    let set_name = set_of(set).ok_or_else(not_found)?;
    let action = http::field(form, "action").unwrap_or_default();
    let set_action = match (set_name, action) {
        (_, "delete") => SetAction::Delete,
        (SetName::Retries | SetName::Scheduled, "kill") => SetAction::Kill,
        (SetName::Retries | SetName::Dead, "retry") => SetAction::Enqueue,
        (SetName::Scheduled, "add_to_queue" | "retry") => SetAction::Enqueue,
        _ => return Err(bad(format!("action {action:?} does not apply to {set}"))),
    };
    let mut keys: Vec<SetKey> = Vec::new();
    if let Some(key) = path_key {
        keys.push(SetKey::from_token(key).ok_or_else(not_found)?);
    }
    let mut all = false;
    for (_, value) in form.iter().filter(|(name, _)| name == "key") {
        if value == "all" {
            all = true;
        } else if keys.len() == KEYS_MAX {
            return Err(bad(format!("at most {KEYS_MAX} keys per request")));
        } else {
            keys.push(SetKey::from_token(value).ok_or_else(|| bad("malformed key"))?);
        }
    }
    let search = http::field(form, "q").unwrap_or_default().trim();
    if search.len() > SEARCH_BYTES_MAX {
        return Err(bad("search text too long"));
    }
    let selection = if all {
        Selection::Matching(search)
    } else {
        Selection::Keys(&keys)
    };
    let n = core.set_action(set_name, selection, set_action, now);
    log::info!("web: {set}: {action} on {n} job(s)");
    let mut back = format!("/{set}");
    if !search.is_empty() {
        back.push_str("?q=");
        back.push_str(&http::percent_encode(search));
    }
    Ok(Response::see_other(back))
}
