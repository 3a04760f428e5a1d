//! Raw-TCP tests of the wire protocol against the real binary.

mod harness;

use harness::{bulk, err, info, job, ok, pwdhash, wait_until, Raw, Werk};
use std::time::{Duration, Instant};
use werk::resp::Frame;

#[test]
fn greeting_and_handshake() {
    let w = Werk::start();
    let (mut raw, hi) = Raw::connect(w.addr);
    assert_eq!(hi, r#"HI {"v":2}"#);
    // A Ruby-style LF-only HELLO.
    raw.send_bytes(b"HELLO {\"v\":2,\"wid\":\"\",\"username\":null,\"labels\":null}\n");
    assert_eq!(raw.reply(), Some(ok()));
    assert_eq!(raw.cmd(r#"HELLO {"v":2}"#), err("unknown command HELLO"));
    assert_eq!(raw.cmd("push {}"), err("unknown command push"));
    assert_eq!(raw.cmd("PING"), err("unknown command PING"));
}

#[test]
fn not_hello_or_bad_json_closes_silently() {
    let w = Werk::start();
    for first in [
        "INFO",
        "",
        "HELLO {\"pid\":\"12\"}",
        "HELLO {",
        "\u{16}\u{3}\u{1}",
    ] {
        let (mut raw, _) = Raw::connect(w.addr);
        raw.send(first);
        assert!(raw.closed(), "{first:?} was answered");
    }
}

#[test]
fn hello_deadline_is_two_seconds() {
    let w = Werk::start();
    let (mut raw, _) = Raw::connect(w.addr);
    let t = Instant::now();
    assert!(raw.closed());
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_millis(4000),
        "closed after {waited:?}"
    );
}

#[test]
fn password_rounds_and_rejection() {
    let w = Werk::start_with(&[], &[("FAKTORY_PASSWORD", "s3cret")]);
    let (mut raw, hi) = Raw::connect(w.addr);
    let hi: serde_json::Value = serde_json::from_str(hi.trim_start_matches("HI ")).unwrap();
    let rounds = hi["i"].as_u64().unwrap();
    let salt = hi["s"].as_str().unwrap().to_owned();
    assert!((4000..=8095).contains(&rounds));
    assert!((1..=16).contains(&salt.len()));
    let hash = pwdhash("s3cret", &salt, rounds);
    assert_eq!(
        raw.cmd(&format!(r#"HELLO {{"v":2,"pwdhash":"{hash}"}}"#)),
        ok()
    );

    // No `v` (the Python client): one round.
    let (mut raw, hi) = Raw::connect(w.addr);
    let hi: serde_json::Value = serde_json::from_str(hi.trim_start_matches("HI ")).unwrap();
    let one = pwdhash("s3cret", hi["s"].as_str().unwrap(), 1);
    assert_eq!(raw.cmd(&format!(r#"HELLO {{"pwdhash": "{one}"}}"#)), ok());

    for bad in [r#"HELLO {"v":2,"pwdhash":"00"}"#, r#"HELLO {"v":2}"#] {
        let (mut raw, _) = Raw::connect(w.addr);
        assert_eq!(raw.cmd(bad), err("Invalid password"));
        assert!(raw.closed());
    }
}

/// A wid is kept as raw bytes in each reservation the journal records; a NUL in it (which no
/// client sends) is refused at HELLO, and the connection closed.
#[test]
fn a_wid_with_a_nul_character_is_refused() {
    let w = Werk::start();
    let (mut raw, _) = Raw::connect(w.addr);
    assert_eq!(
        raw.cmd(r#"HELLO {"wid":"w\u0000x","v":2}"#),
        err("invalid wid: it contains a NUL character")
    );
    assert!(raw.closed());
    // The server goes on.
    let mut ok_conn = Raw::ready(w.addr, r#"{"wid":"wx","v":2}"#);
    assert_eq!(
        ok_conn.cmd(&format!("PUSH {}", job("after-nul-wid", "q"))),
        ok()
    );
}

#[test]
fn push_validation_texts() {
    let w = Werk::start();
    let mut raw = Raw::ready(w.addr, "{}");
    let table = [
        (
            r#"{"jid":"short","jobtype":"T","args":[]}"#,
            "jobs must have a reasonable jid parameter",
        ),
        (
            r#"{"jid":"12345678","args":[]}"#,
            "jobs must have a jobtype parameter",
        ),
        (
            r#"{"jid":"12345678","jobtype":"T"}"#,
            "jobs must have an args parameter",
        ),
        (
            r#"{"jid":"12345678","jobtype":"T","args":[],"reserve_for":86401}"#,
            "jobs cannot be reserved for more than one day",
        ),
        (
            r#"{"jid":"12345678","jobtype":"T","args":[],"at":"x"}"#,
            r#"invalid timestamp for 'at': "x": bad year"#,
        ),
        (
            r#"{"jid":"12345678","jobtype":"T","args":[],"queue":"a/b"}"#,
            r#"cannot get "a/b" queue: queue names must match \A[a-zA-Z0-9._-]+\z"#,
        ),
    ];
    for (payload, want) in table {
        assert_eq!(raw.cmd(&format!("PUSH {payload}")), err(want), "{payload}");
    }
    match raw.cmd(r#"PUSH {"jid":"12345678","jobtype":"T","args":"x"}"#) {
        Frame::Error(e) => assert!(e.starts_with("ERR invalid JSON: "), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(raw.cmd("PUSH"), err("internal error"));
    assert_eq!(raw.cmd("ACK"), err("internal error"));
    assert_eq!(raw.cmd("ACK notjson"), err("invalid ACK notjson"));
    assert_eq!(raw.cmd(r#"ACK {"jid":"nobody-home"}"#), ok());
    assert_eq!(
        raw.cmd(r#"FAIL {"jid":"nobody-home"}"#),
        err("Job not found nobody-home")
    );
    assert_eq!(
        raw.cmd(r#"BEAT {"wid":"ghost"}"#),
        err("unknown worker ghost")
    );
    assert_eq!(
        raw.cmd("FETCH"),
        err("must call fetch with at least one queue")
    );
    assert_eq!(raw.cmd("QUEUE FOO x"), err("no such QUEUE subcommand: FOO"));
    assert_eq!(
        raw.cmd("QUEUE LATENCY *"),
        err("QUEUE LATENCY does not support wildcards")
    );
    assert_eq!(
        raw.cmd(r#"MUTATE {"cmd":"zap","target":"dead"}"#),
        err("unknown mutate operation")
    );
    assert_eq!(
        raw.cmd(r#"MUTATE {"cmd":"kill","target":"working"}"#),
        err("invalid target for mutation command")
    );
    // Bad bytes do not hurt the server.
    raw.send_bytes(b"PUSH {\"jid\":\"\xff\xfe\0\"}\r\n");
    assert!(matches!(raw.reply(), Some(Frame::Error(_))));
    assert_eq!(
        raw.cmd(&format!("PUSH {}", job("still-alive", "default"))),
        ok()
    );
}

#[test]
fn stored_form_is_canonical() {
    let w = Werk::start();
    let mut raw = Raw::ready(w.addr, "{}");
    let push =
        r#"PUSH {"jid": "a1b2c3d4e5f6", "jobtype": "Send", "args": [1, "x", 1.50], "priority": 9}"#;
    assert_eq!(raw.cmd(push), ok());
    let job: String = bulk(raw.cmd("FETCH default"));
    assert!(
        job.starts_with(
            r#"{"retry":25,"jid":"a1b2c3d4e5f6","queue":"default","jobtype":"Send","created_at":""#
        ),
        "{job}"
    );
    assert!(job.ends_with(r#","args":[1,"x",1.50]}"#), "{job}");
    assert!(!job.contains("priority") && !job.contains(' '), "{job}");
}

#[test]
fn fetch_blocks_then_null_and_wakes_on_push() {
    let w = Werk::start();
    let mut a = Raw::ready(w.addr, "{}");
    let t = Instant::now();
    assert_eq!(a.cmd("FETCH empty"), Frame::Bulk(None));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_millis(3500),
        "{waited:?}"
    );

    let mut b = Raw::ready(w.addr, "{}");
    a.send("FETCH q1 q2");
    std::thread::sleep(Duration::from_millis(200)); // let the FETCH park before the push
    let t = Instant::now();
    assert_eq!(b.cmd(&format!("PUSH {}", job("wakeup01", "q2"))), ok());
    let got = bulk(a.reply().unwrap());
    assert!(got.contains("wakeup01"));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn queue_order_fifo_and_pipelining() {
    let w = Werk::start();
    let mut raw = Raw::ready(w.addr, "{}");
    let mut batch = String::new();
    for (jid, q) in [
        ("low00001", "low"),
        ("high0001", "high"),
        ("low00002", "low"),
        ("high0002", "high"),
    ] {
        batch.push_str(&format!("PUSH {}\r\n", job(jid, q)));
    }
    batch.push_str("FETCH high low\r\nFETCH high low\nFETCH high low\r\nFETCH high low\n");
    raw.send_bytes(batch.as_bytes());
    for _ in 0..4 {
        assert_eq!(raw.reply(), Some(ok()));
    }
    let order: Vec<String> = (0..4)
        .map(|_| {
            let j: serde_json::Value = serde_json::from_str(&bulk(raw.reply().unwrap())).unwrap();
            j["jid"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(order, ["high0001", "high0002", "low00001", "low00002"]);
}

#[test]
fn split_writes_and_eof_mid_line() {
    let w = Werk::start();
    let mut raw = Raw::ready(w.addr, "{}");
    let line = format!("PUSH {}\r\n", job("splitjob", "default"));
    for piece in line.as_bytes().chunks(7) {
        raw.send_bytes(piece);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(raw.reply(), Some(ok()));
    let mut cut = Raw::ready(w.addr, "{}");
    cut.send_bytes(b"PUSH {\"jid\":\"half");
    drop(cut);
    let mut again = Raw::ready(w.addr, "{}");
    assert_eq!(info(&mut again)["faktory"]["queues"]["default"], 1);
}

#[test]
fn commands_and_a_half_close_in_one_segment_are_answered_then_closed() {
    // The server skips the read that would only say "nothing more" after a short read; the end
    // of the stream must still be seen when it came with the data (one event for both).
    let w = Werk::start();
    for (i, end) in ["", "END\r\n"].into_iter().enumerate() {
        let (mut raw, _) = Raw::connect(w.addr);
        let jid = format!("halfclose{i}");
        let bytes = format!("HELLO {{}}\r\nPUSH {}\r\nINFO\r\n{end}", job(&jid, "hc"));
        raw.send_bytes(bytes.as_bytes());
        raw.stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        assert_eq!(raw.reply(), Some(ok()));
        assert_eq!(raw.reply(), Some(ok()));
        assert!(matches!(raw.reply(), Some(Frame::Bulk(Some(_)))));
        assert_eq!(raw.reply(), None, "closed after the last reply");
    }
    let mut again = Raw::ready(w.addr, "{}");
    assert_eq!(info(&mut again)["faktory"]["queues"]["hc"], 2);
}

#[test]
fn beat_states_and_quiet_fetch() {
    let w = Werk::start();
    let mut raw = Raw::ready(
        w.addr,
        r#"{"v":2,"wid":"worker-1","hostname":"h","pid":7,"labels":["a"]}"#,
    );
    assert_eq!(
        raw.cmd(r#"PUSH {"jid":"quietjob","jobtype":"T","args":[]}"#),
        ok()
    );
    assert_eq!(raw.cmd(r#"BEAT {"wid":"worker-1","rss_kb":1000}"#), ok());
    raw.send(r#"BEAT {"wid":"worker-1","current_state":"quiet"}"#);
    assert_eq!(
        raw.reply(),
        Some(Frame::Bulk(Some(br#"{"state":"quiet"}"#.to_vec())))
    );
    // A worker never moves backward.
    assert_eq!(
        bulk(raw.cmd(r#"BEAT {"wid":"worker-1","current_state":"running"}"#)),
        r#"{"state":"quiet"}"#
    );
    let t = Instant::now();
    assert_eq!(raw.cmd("FETCH default"), Frame::Bulk(None));
    assert!(t.elapsed() >= Duration::from_millis(1500));
    assert_eq!(
        bulk(raw.cmd(r#"BEAT {"wid":"worker-1","current_state":"terminate"}"#)),
        r#"{"state":"terminate"}"#
    );
    let i = info(&mut raw);
    assert_eq!(i["faktory"]["queues"]["default"], 1);
    assert_eq!(i["faktory"]["tasks"]["Workers"]["size"], 1);
}

#[test]
fn end_closes_without_reply() {
    let w = Werk::start();
    let mut raw = Raw::ready(w.addr, "{}");
    raw.send("END");
    assert!(raw.closed());
}

#[test]
fn info_layout() {
    let w = Werk::start();
    let mut raw = Raw::ready(w.addr, "{}");
    let i = info(&mut raw);
    assert_eq!(i.as_object().unwrap().len(), 4, "{i}");
    assert_eq!(i["faktory"]["tasks"]["Retries"]["size"], 0);
    assert_eq!(i["faktory"]["tasks"]["Dead"]["size"], 0);
    assert_eq!(i["server"]["faktory_version"], "1.10.0");
    assert!(!i["server"]["description"]
        .as_str()
        .unwrap()
        .contains("Enterprise"));
    let hms = i["server_utc_time"].as_str().unwrap();
    assert!(hms.len() == 12 && hms.ends_with(" UTC"), "{hms}");
    assert_eq!(bulk(raw.cmd("QUEUE LATENCY default")), r#"{"default":0.0}"#);
}

#[test]
fn line_over_the_limit_gets_an_error_then_close() {
    let w = Werk::start_with(&["--line-bytes-max", "1024"], &[]);
    let mut raw = Raw::ready(w.addr, "{}");
    let long = format!("PUSH {}", "x".repeat(2000));
    raw.send(&long);
    assert_eq!(
        raw.reply(),
        Some(err("command line too long: the limit is 1024 bytes"))
    );
    assert!(raw.closed());
    let mut other = Raw::ready(w.addr, "{}");
    assert_eq!(
        other.cmd(&format!("PUSH {}", job("after-big", "default"))),
        ok()
    );
}

#[test]
fn client_that_does_not_read_is_held_back_not_dropped() {
    let w = Werk::start();
    let mut raw = Raw::ready(w.addr, "{}");
    // 3 MB of pipelined commands whose replies (INFO is ~600 bytes) exceed the write bound.
    let n = 5_000;
    let writer = raw.stream.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        let mut writer = writer;
        let mut data = Vec::new();
        for _ in 0..n {
            data.extend_from_slice(b"INFO\r\n");
        }
        std::io::Write::write_all(&mut writer, &data).unwrap();
    });
    // Meanwhile, another client is served promptly.
    let mut other = Raw::ready(w.addr, "{}");
    let start = Instant::now();
    assert_eq!(
        other.cmd(&format!("PUSH {}", job("neighbour", "default"))),
        ok()
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    for _ in 0..n {
        assert!(matches!(raw.reply(), Some(Frame::Bulk(Some(_)))));
    }
    t.join().unwrap();
}

#[test]
fn pushb_reports_per_job_errors() {
    let w = Werk::start();
    let mut raw = Raw::ready(w.addr, "{}");
    let ok_batch = format!(
        "PUSHB [{},{}]",
        job("batch-001", "b"),
        job("batch-002", "b")
    );
    assert_eq!(bulk(raw.cmd(&ok_batch)), "{}");
    let mixed = format!(
        r#"PUSHB [{},{{"jid":"short","jobtype":"T","args":[]}}]"#,
        job("batch-003", "b")
    );
    assert_eq!(
        bulk(raw.cmd(&mixed)),
        r#"{"short":"jobs must have a reasonable jid parameter"}"#
    );
    assert_eq!(info(&mut raw)["faktory"]["queues"]["b"], 3);
}

#[test]
fn server_survives_abuse() {
    let mut w = Werk::start();
    for garbage in [
        &b"\0\0\0\r\n"[..],
        b"*\x00\r\n",
        b"$\x00\r\n",
        b"*99999999999\r\n",
        b"\xff\xfe\r\n",
    ] {
        let (mut raw, _) = Raw::connect(w.addr);
        raw.send_bytes(garbage);
        assert!(raw.closed());
    }
    let mut raw = Raw::ready(w.addr, "{}");
    let deep = format!("PUSH {}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(raw.cmd(&deep), Frame::Error(_)));
    assert!(wait_until(Duration::from_secs(2), || w.alive()));
    assert_eq!(
        raw.cmd(&format!("PUSH {}", job("survivor", "default"))),
        ok()
    );
}

#[test]
fn ten_megabyte_job_round_trips() {
    let w = Werk::start();
    let mut raw = Raw::ready(w.addr, "{}");
    let big = "x".repeat(10 << 20);
    let push = format!(r#"PUSH {{"jid":"bigjob01","jobtype":"T","args":["{big}"]}}"#);
    assert_eq!(raw.cmd(&push), ok());
    let job = bulk(raw.cmd("FETCH default"));
    assert!(job.len() > 10 << 20);
    assert!(job.contains(&big));
}

#[test]
fn sigterm_closes_clients_and_exits_zero() {
    let mut w = Werk::start();
    let mut raw = Raw::ready(w.addr, "{}");
    assert_eq!(
        raw.cmd(&format!("PUSH {}", job("beforeterm", "default"))),
        ok()
    );
    let status = w
        .terminate(Duration::from_secs(5))
        .expect("werk did not exit within 5 s");
    assert!(status.success(), "{status:?}");
    assert!(raw.closed(), "client connection left open");
    assert!(w.logged("signal received"));
}
