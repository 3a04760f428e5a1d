//! The HTML pages, written by hand. Everything that comes from a job, a worker or a request is
//! passed through [`esc`]; long fields are cut ([`ARGS_CHARS_LIST`], [`FIELD_BYTES_DETAIL`]) so
//! a page stays small whatever the jobs hold.

use super::{http::percent_encode, WebContext, HISTORY_DAYS, PAGE_SIZE, SEARCH_SCAN_MAX};
use crate::clock::Now;
use crate::core::{Core, Daily, Job, Reservation, SetKey, SetName, Worker};
use crate::timestamp::Timestamp;
use std::collections::HashMap;
use std::fmt::Write;

/// Characters of `args` shown in a list row.
const ARGS_CHARS_LIST: usize = 120;
/// Bytes of one field shown on a job's own page.
const FIELD_BYTES_DETAIL: usize = 64 * 1024;
/// Reservations listed on the Busy page.
const BUSY_JOBS_MAX: usize = 500;

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The first `max` characters of `text`, with an ellipsis when cut.
fn cut_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The first `max` bytes of `text` (on a character boundary), with a note when cut.
fn cut_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n… ({} more bytes not shown)",
        &text[..end],
        text.len() - end
    )
}

/// "3 min ago" / "in 2 h" for `t` seen at `now`, in a `<time>` with the exact UTC time.
fn when(t: Timestamp, now: Now) -> String {
    let secs = t.nanos_until(now.wall) / 1_000_000_000;
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let span = match n {
        0..=59 => format!("{n} s"),
        60..=3599 => format!("{} min", n / 60),
        3600..=86_399 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    let rel = if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    };
    let exact = t.to_rfc3339();
    format!("<time datetime=\"{exact}\" title=\"{exact}\">{rel}</time>")
}

/// [`when`], or a dash for no time.
fn when_opt(t: Option<Timestamp>, now: Now) -> String {
    match t {
        Some(t) => when(t, now),
        None => "<span class=\"muted\">–</span>".to_owned(),
    }
}

/// Like [`when`] for a timestamp kept as text in a job (shown as is when it does not parse).
fn when_text(text: Option<&str>, now: Now) -> String {
    match text {
        None | Some("") => "<span class=\"muted\">–</span>".to_owned(),
        Some(t) => match Timestamp::parse_rfc3339(t) {
            Ok(ts) => when(ts, now),
            Err(_) => esc(t),
        },
    }
}

fn set_title(set: SetName) -> &'static str {
    match set {
        SetName::Retries => "Retries",
        SetName::Scheduled => "Scheduled",
        SetName::Dead => "Dead",
    }
}

fn set_path(set: SetName) -> &'static str {
    match set {
        SetName::Retries => "retries",
        SetName::Scheduled => "scheduled",
        SetName::Dead => "morgue",
    }
}

/// What a page needs: the core to read, the context, the time, the CSRF token for its forms.
pub struct View<'a> {
    /// The state to show.
    pub core: &'a Core,
    /// Facts from the loop (for `/debug`).
    pub ctx: &'a WebContext<'a>,
    /// The time of this request.
    pub now: Now,
    /// The CSRF token every form carries.
    pub csrf: &'a str,
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("View")
    }
}

impl View<'_> {
    fn layout(&self, title: &str, active: &str, body: &str) -> String {
        let mut out = String::with_capacity(body.len() + 2048);
        let _ = write!(
            out,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{} · werk</title><link rel=\"icon\" href=\"data:,\">\
             <link rel=\"stylesheet\" href=\"/static/werk.css\">\
             <script src=\"/static/werk.js\" defer></script></head><body><header><nav>\
             <a class=\"brand\" href=\"/\">werk</a>",
            esc(title)
        );
        for (href, label) in [
            ("/", "Dashboard"),
            ("/busy", "Busy"),
            ("/queues", "Queues"),
            ("/retries", "Retries"),
            ("/scheduled", "Scheduled"),
            ("/morgue", "Dead"),
            ("/debug", "Debug"),
        ] {
            let on = if label == active { " class=\"on\"" } else { "" };
            let _ = write!(out, "<a href=\"{href}\"{on}>{label}</a>");
        }
        let _ = writeln!(
            out,
            "</nav></header><main>{body}</main><footer>werk {} · Faktory protocol {} · \
             {}</footer></body></html>",
            env!("CARGO_PKG_VERSION"),
            crate::core::FAKTORY_COMPAT_VERSION,
            self.now.wall.to_rfc3339()
        );
        out
    }

    fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            esc(self.csrf)
        )
    }

    /// A one-button form posting `fields` to `action`.
    fn button(&self, action: &str, fields: &[(&str, &str)], label: &str, class: &str) -> String {
        let mut out = format!(
            "<form class=\"inline\" method=\"post\" action=\"{}\">{}",
            esc(action),
            self.csrf_field()
        );
        for (name, value) in fields {
            let _ = write!(
                out,
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(name),
                esc(value)
            );
        }
        let _ = write!(
            out,
            "<button type=\"submit\" class=\"{class}\">{}</button></form>",
            esc(label)
        );
        out
    }

    // ----- dashboard ---------------------------------------------------------------------------

    /// The dashboard: counters, the live chart, the history for `days` days, server facts.
    pub fn dashboard(&self, days: usize) -> String {
        let core = self.core;
        let sets = |s| core.set(s).len();
        let enqueued: usize = core.queues().map(|(_, q)| q.jobs.len()).sum();
        let mut b = String::new();
        b.push_str("<h1>Dashboard</h1><div class=\"cards\">");
        for (stat, label, value, href) in [
            (
                "processed",
                "Processed",
                core.stats().processed as usize,
                "/",
            ),
            ("failed", "Failed", core.stats().failures as usize, "/"),
            ("busy", "Busy", core.working().len(), "/busy"),
            ("enqueued", "Enqueued", enqueued, "/queues"),
            ("retries", "Retries", sets(SetName::Retries), "/retries"),
            (
                "scheduled",
                "Scheduled",
                sets(SetName::Scheduled),
                "/scheduled",
            ),
            ("dead", "Dead", sets(SetName::Dead), "/morgue"),
        ] {
            let _ = write!(
                b,
                "<a class=\"card\" href=\"{href}\"><b data-stat=\"{stat}\">{value}</b>\
                 <span>{label}</span></a>"
            );
        }
        b.push_str("</div>");
        b.push_str(
            "<section class=\"panel\"><h2>Live <span class=\"legend\"><i class=\"p\"></i>processed\
             <i class=\"f\"></i>failed</span><span class=\"tools\"><label>poll every \
             <select id=\"poll-interval\">",
        );
        for s in [2, 5, 10, 20, 60] {
            let sel = if s == 5 { " selected" } else { "" };
            let _ = write!(b, "<option value=\"{s}\"{sel}>{s} s</option>");
        }
        b.push_str(
            "</select></label></span></h2><svg id=\"live-chart\" class=\"chart\" \
             viewBox=\"0 0 800 200\" preserveAspectRatio=\"none\" role=\"img\" \
             aria-label=\"processed and failed jobs per poll\">\
             <line class=\"grid\" x1=\"30\" y1=\"170\" x2=\"800\" y2=\"170\"/>\
             <line class=\"grid\" x1=\"30\" y1=\"30\" x2=\"800\" y2=\"30\"/>\
             <text class=\"axis\" x=\"0\" y=\"34\" id=\"live-max\">1</text>\
             <text class=\"axis\" x=\"0\" y=\"174\">0</text>\
             <polyline id=\"live-processed\" class=\"processed\" points=\"\"/>\
             <polyline id=\"live-failed\" class=\"failed\" points=\"\"/></svg>\
             <div class=\"muted\" id=\"live-caption\">waiting for the first poll of /stats</div>\
             </section>",
        );
        let history = core.daily_history(days, self.now);
        b.push_str("<section class=\"panel\"><h2>History <span class=\"legend\"><i class=\"p\"></i>processed<i class=\"f\"></i>failed</span><span class=\"tools\">");
        for d in HISTORY_DAYS {
            if d == days {
                let _ = write!(b, "<b>{d} days</b> ");
            } else {
                let _ = write!(b, "<a href=\"/?days={d}\">{d} days</a> ");
            }
        }
        b.push_str("</span></h2>");
        b.push_str(&history_svg(&history));
        b.push_str("</section>");
        let _ = write!(
            b,
            "<section class=\"panel\"><h2>Server</h2><dl class=\"facts\">\
             <dt>Version</dt><dd>werk {} (Faktory protocol {})</dd>\
             <dt>Uptime</dt><dd data-stat=\"uptime\">{} s</dd>\
             <dt>Connections</dt><dd data-stat=\"connections\">{}</dd>\
             <dt>Memory</dt><dd data-stat=\"memory\">{} MB</dd>\
             <dt>Commands</dt><dd>{}</dd><dt>Workers</dt><dd>{}</dd></dl></section>",
            env!("CARGO_PKG_VERSION"),
            crate::core::FAKTORY_COMPAT_VERSION,
            core.uptime_secs(self.now),
            core.connections(),
            core.used_memory_mb(),
            core.stats().command_count,
            core.workers().count(),
        );
        self.layout("Dashboard", "Dashboard", &b)
    }

    // ----- busy ------------------------------------------------------------------------------

    /// The Busy page: worker processes, then the jobs they hold.
    pub fn busy(&self) -> String {
        let mut workers: Vec<&Worker> = self.core.workers().collect();
        workers.sort_by(|a, b| (&a.hostname, a.pid, &a.wid).cmp(&(&b.hostname, b.pid, &b.wid)));
        let mut held: HashMap<&str, usize> = HashMap::new();
        let mut reservations: Vec<(&str, &Reservation)> = Vec::new();
        for (jid, r) in self.core.working() {
            *held.entry(&*r.wid).or_default() += 1;
            reservations.push((jid, r));
        }
        reservations.sort_by_key(|(_, r)| r.reserved_at);
        let mut b = format!(
            "<h1>Busy</h1><p>{} worker process(es), {} job(s) in progress.</p>\
             <div class=\"actions\">{}{}</div>",
            workers.len(),
            reservations.len(),
            self.button(
                "/busy",
                &[("wid", "all"), ("signal", "quiet")],
                "Quiet all",
                ""
            ),
            self.button(
                "/busy",
                &[("wid", "all"), ("signal", "terminate")],
                "Stop all",
                "danger"
            ),
        );
        if workers.is_empty() {
            b.push_str("<div class=\"empty\">No worker process is connected.</div>");
        } else {
            b.push_str(
                "<table id=\"workers\"><tr><th>Process</th><th>wid</th><th>Labels</th>\
                 <th>Started</th><th>Last beat</th><th class=\"num\">RSS</th>\
                 <th class=\"num\">Conns</th><th class=\"num\">Jobs</th><th>State</th><th></th></tr>",
            );
            for w in &workers {
                b.push_str(&self.worker_row(w, held.get(&*w.wid).copied().unwrap_or(0)));
            }
            b.push_str("</table>");
        }
        b.push_str("<h2>Jobs in progress</h2>");
        b.push_str(&self.reservations_table(&reservations));
        self.layout("Busy", "Busy", &b)
    }

    /// One worker process, with its Quiet and Stop buttons while they apply.
    fn worker_row(&self, w: &Worker, jobs: usize) -> String {
        let state = w.state.as_str();
        let labels: Vec<String> = w.labels.iter().map(|l| esc(l)).collect();
        let mut actions = String::new();
        if state == "running" {
            actions.push_str(&self.button(
                "/busy",
                &[("wid", &w.wid), ("signal", "quiet")],
                "Quiet",
                "",
            ));
        }
        if state != "terminate" {
            actions.push_str(&self.button(
                "/busy",
                &[("wid", &w.wid), ("signal", "terminate")],
                "Stop",
                "danger",
            ));
        }
        format!(
            "<tr data-wid=\"{wid}\"><td>{host}:{pid}</td><td><code>{wid}</code></td>\
             <td>{labels}</td><td>{started}</td><td>{beat}</td>\
             <td class=\"num\">{rss}</td><td class=\"num\">{conns}</td>\
             <td class=\"num\">{jobs}</td><td><span class=\"badge {state}\">{state}</span>\
             </td><td>{actions}</td></tr>",
            wid = esc(&w.wid),
            host = esc(&w.hostname),
            pid = w.pid,
            labels = labels.join(", "),
            started = when(w.started_at, self.now),
            beat = when(w.last_beat, self.now),
            rss = if w.rss_kb > 0 {
                format!("{} MB", w.rss_kb / 1024)
            } else {
                "–".to_owned()
            },
            conns = w.conns.len(),
        )
    }

    /// Reserved jobs, oldest first, at most [`BUSY_JOBS_MAX`].
    fn reservations_table(&self, reservations: &[(&str, &Reservation)]) -> String {
        if reservations.is_empty() {
            return "<div class=\"empty\">No job is reserved.</div>".to_owned();
        }
        let mut b = String::from(
            "<table id=\"working\"><tr><th>wid</th><th>jid</th><th>Queue</th><th>Job</th>\
             <th>Args</th><th>Started</th><th>Expires</th></tr>",
        );
        for (jid, r) in reservations.iter().take(BUSY_JOBS_MAX) {
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td>\
                 <td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&r.wid),
                esc(jid),
                esc(r.job.queue()),
                esc(r.job.jobtype()),
                esc(&cut_chars(r.job.fields().args, ARGS_CHARS_LIST)),
                when(r.reserved_at, self.now),
                when(r.expires_at, self.now),
            );
        }
        b.push_str("</table>");
        if reservations.len() > BUSY_JOBS_MAX {
            let _ = write!(
                b,
                "<p class=\"muted\">Showing the {BUSY_JOBS_MAX} oldest of {}.</p>",
                reservations.len()
            );
        }
        b
    }

    // ----- queues ----------------------------------------------------------------------------

    fn queue_actions(&self, name: &str, paused: bool) -> String {
        let path = format!("/queues/{}", percent_encode(name));
        let toggle = if paused {
            self.button(&path, &[("action", "resume")], "Resume", "")
        } else {
            self.button(&path, &[("action", "pause")], "Pause", "")
        };
        toggle + &self.button(&path, &[("action", "delete")], "Clear", "danger")
    }

    /// The list of queues.
    pub fn queues(&self) -> String {
        let mut b = String::from("<h1>Queues</h1>");
        if self.core.queues().next().is_none() {
            b.push_str(
                "<div class=\"empty\">No queue yet: queues appear with their first job.</div>",
            );
            return self.layout("Queues", "Queues", &b);
        }
        b.push_str(
            "<table id=\"queues\"><tr><th>Queue</th><th class=\"num\">Size</th>\
             <th class=\"num\">Latency</th><th>State</th><th></th></tr>",
        );
        for (name, q) in self.core.queues() {
            let _ = write!(
                b,
                "<tr data-queue=\"{n}\"><td><a href=\"/queues/{u}\">{n}</a></td>\
                 <td class=\"num\">{size}</td><td class=\"num\">{lat:.1} s</td><td>{state}</td>\
                 <td>{actions}</td></tr>",
                n = esc(name),
                u = percent_encode(name),
                size = q.jobs.len(),
                lat = self.core.queue_latency_secs(name, self.now),
                state = if q.paused {
                    "<span class=\"badge paused\">paused</span>"
                } else {
                    "<span class=\"badge running\">active</span>"
                },
                actions = self.queue_actions(name, q.paused),
            );
        }
        b.push_str("</table>");
        self.layout("Queues", "Queues", &b)
    }

    /// One queue's page `page` of jobs.
    pub fn queue(&self, name: &str, page: usize) -> String {
        let Some(q) = self.core.queue_ref(name) else {
            return self.layout("Queue", "Queues", "<p>No such queue.</p>");
        };
        let mut b = format!(
            "<h1>Queue {n} <span class=\"badge {cls}\" id=\"queue-state\">{state}</span></h1>\
             <p>{size} job(s), latency {lat:.1} s.</p><div class=\"actions\">{actions}</div>",
            n = esc(name),
            cls = if q.paused { "paused" } else { "running" },
            state = if q.paused { "paused" } else { "active" },
            size = q.jobs.len(),
            lat = self.core.queue_latency_secs(name, self.now),
            actions = self.queue_actions(name, q.paused),
        );
        let start = (page - 1).saturating_mul(PAGE_SIZE).min(q.jobs.len());
        let end = (start + PAGE_SIZE).min(q.jobs.len());
        if start == end {
            b.push_str("<div class=\"empty\">No job on this page.</div>");
        } else {
            b.push_str(
                "<table id=\"jobs\"><tr><th>jid</th><th>Job</th><th>Args</th><th>Enqueued</th>\
                 </tr>",
            );
            for job in q.jobs.range(start..end) {
                let _ = write!(
                    b,
                    "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                    esc(job.jid()),
                    esc(job.jobtype()),
                    esc(&cut_chars(job.fields().args, ARGS_CHARS_LIST)),
                    when_opt(job.enqueued_at(), self.now),
                );
            }
            b.push_str("</table>");
        }
        b.push_str(&pager(
            &format!("/queues/{}?", percent_encode(name)),
            page,
            q.jobs.len(),
        ));
        self.layout(&format!("Queue {name}"), "Queues", &b)
    }

    // ----- sorted sets -----------------------------------------------------------------------

    /// The action buttons of a set's forms; `all` labels them for the "every job" form.
    fn set_buttons(&self, set: SetName, all: bool) -> String {
        let mut out = String::new();
        let mut add = |value: &str, label: &str, label_all: &str, class: &str| {
            let label = if all { label_all } else { label };
            let _ = write!(
                out,
                "<button type=\"submit\" name=\"action\" value=\"{value}\" class=\"{class}\">\
                 {label}</button>"
            );
        };
        match set {
            SetName::Retries => {
                add("retry", "Retry now", "Retry all now", "");
                add("delete", "Delete", "Delete all", "danger");
                add("kill", "Kill", "Kill all", "danger");
            }
            SetName::Scheduled => {
                add("add_to_queue", "Add to queue", "Add all to queue", "");
                add("delete", "Delete", "Delete all", "danger");
                add("kill", "Kill", "Kill all", "danger");
            }
            SetName::Dead => {
                add("retry", "Retry now", "Retry all now", "");
                add("delete", "Delete", "Delete all", "danger");
            }
        }
        out
    }

    /// A set's page `page`, filtered by `search`, with its forms.
    pub fn set_list(&self, set: SetName, search: &str, page: usize) -> String {
        let title = set_title(set);
        let path = set_path(set);
        let offset = (page - 1).saturating_mul(PAGE_SIZE);
        let found = self
            .core
            .set_page(set, search, offset, PAGE_SIZE, SEARCH_SCAN_MAX);
        let mut b = format!(
            "<h1>{title}</h1><form class=\"actions\" method=\"get\" action=\"/{path}\">\
             <input type=\"search\" name=\"q\" value=\"{q}\" maxlength=\"{max}\" \
             placeholder=\"jobtype, queue, jid, args or error\">\
             <button type=\"submit\">Search</button>{clear}</form>",
            q = esc(search),
            max = super::SEARCH_BYTES_MAX,
            clear = if search.is_empty() {
                String::new()
            } else {
                format!("<a href=\"/{path}\">clear search</a>")
            },
        );
        let _ = write!(
            b,
            "<p id=\"summary\">{} job(s){}{}.</p>",
            found.matched,
            if search.is_empty() {
                String::new()
            } else {
                format!(" match “{}”", esc(search))
            },
            if found.complete {
                String::new()
            } else {
                format!(" among the first {SEARCH_SCAN_MAX} entries")
            }
        );
        if found.entries.is_empty() {
            b.push_str("<div class=\"empty\">No job here.</div>");
        } else {
            let when_label = match set {
                SetName::Retries => "Next retry",
                SetName::Scheduled => "Due",
                SetName::Dead => "Failed",
            };
            let _ = write!(
                b,
                "<form method=\"post\" action=\"/{path}\" id=\"selected\">{csrf}\
                 <input type=\"hidden\" name=\"q\" value=\"{q}\">\
                 <div class=\"actions\">{buttons}</div><table id=\"jobs\"><tr>\
                 <th><input type=\"checkbox\" data-check-all title=\"select all on this page\"></th>\
                 <th>{when_label}</th><th>Queue</th><th>Job</th><th>Args</th><th>Error</th></tr>",
                csrf = self.csrf_field(),
                q = esc(search),
                buttons = self.set_buttons(set, false),
            );
            for (key, job) in &found.entries {
                b.push_str(&self.set_row(set, key, job));
            }
            b.push_str("</table></form>");
            let _ = write!(
                b,
                "<form method=\"post\" action=\"/{path}\" id=\"all\" class=\"actions\">{csrf}\
                 <input type=\"hidden\" name=\"q\" value=\"{q}\">\
                 <input type=\"hidden\" name=\"key\" value=\"all\">\
                 <span class=\"muted\">{scope}:</span> {buttons}</form>",
                csrf = self.csrf_field(),
                q = esc(search),
                scope = if search.is_empty() {
                    "Every job in this set".to_owned()
                } else {
                    format!("Every job matching “{}”", esc(search))
                },
                buttons = self.set_buttons(set, true),
            );
        }
        let base = if search.is_empty() {
            format!("/{path}?")
        } else {
            format!("/{path}?q={}&", percent_encode(search))
        };
        b.push_str(&pager(&base, page, found.matched));
        self.layout(title, title, &b)
    }

    /// One row of a set's list: a checkbox with the entry's key, its time (linking to the
    /// job's page), queue, jobtype, args and error.
    fn set_row(&self, set: SetName, key: &SetKey, job: &Job) -> String {
        let token = key.to_token();
        let path = set_path(set);
        let failure = job.failure();
        let stamp = match set {
            SetName::Dead => when_text(failure.as_ref().map(|f| &*f.failed_at), self.now),
            _ => when(key.at, self.now),
        };
        let error = failure.as_ref().map_or(String::new(), |f| {
            format!(
                "<b>{}</b>: {}",
                esc(&f.errtype),
                esc(&cut_chars(&f.message, ARGS_CHARS_LIST))
            )
        });
        format!(
            "<tr data-jid=\"{jid}\"><td><input type=\"checkbox\" name=\"key\" \
             value=\"{token}\"></td><td><a href=\"/{path}/{token}\">{stamp}</a></td>\
             <td>{queue}</td><td>{jobtype}</td><td><code>{args}</code></td>\
             <td>{error}</td></tr>",
            jid = esc(job.jid()),
            queue = esc(job.queue()),
            jobtype = esc(job.jobtype()),
            args = esc(&cut_chars(job.fields().args, ARGS_CHARS_LIST)),
        )
    }

    /// A job's own page in a set, with its actions.
    pub fn set_entry(&self, set: SetName, key: &SetKey, job: &Job) -> String {
        let title = set_title(set);
        let path = set_path(set);
        let token = key.to_token();
        let mut b = format!(
            "<h1>{title}: {jobtype} <code>{jid}</code></h1>\
             <form method=\"post\" action=\"/{path}/{token}\" class=\"actions\">{csrf}{buttons}\
             </form><table id=\"job\">",
            jobtype = esc(job.jobtype()),
            jid = esc(job.jid()),
            csrf = self.csrf_field(),
            buttons = self.set_buttons(set, false),
        );
        let mut row = |name: &str, html: String| {
            let _ = write!(b, "<tr><th>{name}</th><td>{html}</td></tr>");
        };
        let code = |s: &str| format!("<pre>{}</pre>", esc(&cut_bytes(s, FIELD_BYTES_DETAIL)));
        let fields = job.fields();
        row("jid", format!("<code>{}</code>", esc(fields.jid)));
        row("Queue", esc(fields.queue));
        row("Job type", esc(fields.jobtype));
        row("Args", code(fields.args));
        if let Some(custom) = fields.custom {
            row("Custom", code(custom));
        }
        let due = match set {
            SetName::Retries => "Next retry",
            SetName::Scheduled => "Due",
            SetName::Dead => "Expires",
        };
        row(due, when(key.at, self.now));
        row("Created", when_text(Some(&job.created_at()), self.now));
        row("Enqueued", when_opt(job.enqueued_at(), self.now));
        row("Retry policy", fields.retry.to_string());
        if let Some(f) = &job.failure() {
            row("Error", format!("<b>{}</b>", esc(&f.errtype)));
            row("Message", code(&f.message));
            row("First failed", when_text(Some(&f.failed_at), self.now));
            row("Retry count", f.retry_count.to_string());
            row("Retries left", f.remaining.to_string());
            if !f.backtrace.is_empty() {
                let lines: Vec<&str> = f.backtrace.iter().map(|l| &**l).collect();
                row("Backtrace", code(&lines.join("\n")));
            }
        }
        b.push_str("</table>");
        let _ = write!(
            b,
            "<p><a href=\"/{path}\">← all {}</a></p>",
            title.to_lowercase()
        );
        self.layout(&format!("{title}: {}", job.jid()), title, &b)
    }

    // ----- debug -----------------------------------------------------------------------------

    /// Facts about the loop, the journal and the limits.
    pub fn debug(&self) -> String {
        let f = &self.ctx.facts;
        let h = f.sync_latency;
        let mean_ms = if h.count() == 0 {
            0.0
        } else {
            h.sum_us() as f64 / h.count() as f64 / 1000.0
        };
        let mut b = String::from("<h1>Debug</h1><section class=\"panel\"><dl class=\"facts\">");
        let mut fact = |name: &str, value: String| {
            let _ = write!(b, "<dt>{name}</dt><dd>{value}</dd>");
        };
        fact("werk", env!("CARGO_PKG_VERSION").to_owned());
        fact("Protocol listener", esc(&f.protocol_addr.to_string()));
        fact("Uptime", format!("{} s", self.core.uptime_secs(self.now)));
        fact(
            "Memory",
            format!("{} MB resident", self.core.used_memory_mb()),
        );
        fact("Protocol connections", self.core.connections().to_string());
        fact(
            "Web connections",
            format!("{} of at most {}", f.web_connections, f.web_connections_max),
        );
        fact("Commands", self.core.stats().command_count.to_string());
        fact("Armed core timers", self.core.timer_count().to_string());
        fact("Journal", esc(&f.journal_path));
        fact("Journal size", format!("{} bytes", f.journal_bytes));
        fact("Durable batches", f.journal_durable.to_string());
        fact(
            "Journal state",
            match f.journal_failed {
                None => "healthy".to_owned(),
                Some(why) => format!("<span class=\"error\">failed: {}</span>", esc(why)),
            },
        );
        fact("Sync policy", f.sync_policy.to_owned());
        fact(
            "fsync latency",
            format!(
                "{} syncs, mean {mean_ms:.2} ms, max {:.2} ms",
                h.count(),
                h.max_us() as f64 / 1000.0
            ),
        );
        fact(
            "Web limits",
            format!(
                "head {} B, {} headers, body {} B, {} fields, deadline {} ms",
                super::http::HEAD_BYTES_MAX,
                super::http::HEADERS_MAX,
                super::http::BODY_BYTES_MAX,
                super::http::FIELDS_MAX,
                f.web_request_timeout_ms
            ),
        );
        b.push_str("</dl></section>");
        self.layout("Debug", "Debug", &b)
    }
}

/// Previous/next links for a list of `total` items at `page`; `base` ends in `?` or `&`.
fn pager(base: &str, page: usize, total: usize) -> String {
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let mut out = format!("<div class=\"pager\"><span>page {page} of {pages}</span>");
    if page > 1 {
        let _ = write!(
            out,
            "<a href=\"{}page={}\" rel=\"prev\">← previous</a>",
            esc(base),
            page - 1
        );
    }
    if page < pages {
        let _ = write!(
            out,
            "<a href=\"{}page={}\" rel=\"next\">next →</a>",
            esc(base),
            page + 1
        );
    }
    out.push_str("</div>");
    out
}

/// The history chart: processed and failed per day, as inline SVG.
fn history_svg(history: &[(String, Daily)]) -> String {
    const W: f64 = 800.0;
    const H: f64 = 200.0;
    const PAD: f64 = 30.0;
    let max = history
        .iter()
        .map(|(_, d)| d.processed.max(d.failures))
        .max()
        .unwrap_or(0)
        .max(1);
    let n = history.len().max(2) - 1;
    let points = |pick: fn(&Daily) -> u64| -> String {
        history
            .iter()
            .enumerate()
            .map(|(i, (_, d))| {
                let x = PAD + (W - PAD - 4.0) * i as f64 / n as f64;
                let y = H - PAD - (H - 2.0 * PAD) * pick(d) as f64 / max as f64;
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let first = history.first().map_or("", |(d, _)| d.as_str());
    let last = history.last().map_or("", |(d, _)| d.as_str());
    let total_p: u64 = history.iter().map(|(_, d)| d.processed).sum();
    let total_f: u64 = history.iter().map(|(_, d)| d.failures).sum();
    format!(
        "<svg id=\"history-chart\" class=\"chart\" viewBox=\"0 0 800 200\" \
         preserveAspectRatio=\"none\" role=\"img\" aria-label=\"processed and failed jobs per day\" \
         data-days=\"{days}\">\
         <line class=\"grid\" x1=\"30\" y1=\"170\" x2=\"800\" y2=\"170\"/>\
         <line class=\"grid\" x1=\"30\" y1=\"30\" x2=\"800\" y2=\"30\"/>\
         <text class=\"axis\" x=\"0\" y=\"34\">{max}</text><text class=\"axis\" x=\"0\" y=\"174\">0</text>\
         <text class=\"axis\" x=\"30\" y=\"192\">{first}</text>\
         <text class=\"axis\" x=\"800\" y=\"192\" text-anchor=\"end\">{last}</text>\
         <polyline class=\"processed\" points=\"{p}\"/><polyline class=\"failed\" points=\"{f}\"/>\
         </svg><div class=\"muted\">{total_p} processed, {total_f} failed in {days} days (UTC)</div>",
        days = history.len(),
        p = points(|d| d.processed),
        f = points(|d| d.failures),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_cutting() {
        assert_eq!(
            esc(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        assert_eq!(cut_chars("héllo", 2), "hé…");
        assert_eq!(cut_chars("hé", 2), "hé");
        assert!(cut_bytes(&"é".repeat(10), 5).starts_with("éé\n… (16 more bytes"));
    }

    #[test]
    fn relative_times() {
        let now = Now {
            wall: Timestamp::from_secs(1_000_000),
            mono_ms: 0,
        };
        assert!(when(Timestamp::from_secs(1_000_000 - 90), now).contains(">1 min ago<"));
        assert!(when(Timestamp::from_secs(1_000_000 + 7200), now).contains(">in 2 h<"));
        assert!(when_text(Some("not a time <b>"), now).contains("&lt;b&gt;"));
    }

    #[test]
    fn pager_links() {
        assert!(!pager("/x?", 1, 25).contains("next"));
        assert!(pager("/x?", 1, 26).contains("href=\"/x?page=2\""));
        assert!(pager("/x?q=a&", 2, 26).contains("href=\"/x?q=a&amp;page=1\""));
    }
}
