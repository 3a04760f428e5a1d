//! Command::parse and parse_hello on arbitrary bytes.
//!
//! Checks: neither panics; an error's text is one line when the request line was (a request line
//! never holds '\n', since LineReader splits on it, but it may hold a bare '\r' in the middle, and
//! some errors echo the client's text); and the error as written on the wire (`-ERR ...\r\n`) is
//! always exactly one line. The bytes are also given to resp::decode, which must not panic and
//! must not claim more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use werk::command::{parse_hello, Command, QueueCommand, QueueNames};
use werk::resp::{decode, Frame, Reply};

fuzz_target!(|data: &[u8]| {
    match Command::parse(data) {
        Ok(cmd) => {
            let _ = format!("{cmd:?}");
            match &cmd {
                Command::Fetch(q) => {
                    let names: Vec<&str> = q.names().collect();
                    assert!(!names.is_empty());
                    for n in names {
                        assert!(!n.contains(' '));
                    }
                }
                Command::Queue(QueueCommand::Pause(QueueNames::List(l)))
                | Command::Queue(QueueCommand::Resume(QueueNames::List(l)))
                | Command::Queue(QueueCommand::Remove(QueueNames::List(l))) => {
                    assert!(!l.is_empty());
                    assert_ne!(l[0], "*");
                }
                Command::Queue(QueueCommand::Latency(l)) => {
                    assert_ne!(l.as_slice(), ["*"]);
                }
                Command::Fail(f) => {
                    assert!(!f.jid.as_deref().unwrap_or_default().is_empty());
                }
                _ => {}
            }
        }
        Err(e) => {
            let text = e.to_string();
            let _ = e.known_verb();
            // Only bytes the client sent may bring a line break into the text.
            if !data.contains(&b'\n') {
                assert!(
                    !text.contains('\n'),
                    "LF in error text {text:?} for {data:?}"
                );
            }
            if !data.contains(&b'\r') {
                assert!(
                    !text.contains('\r'),
                    "CR in error text {text:?} for {data:?}"
                );
            }
            // On the wire the reply is always a single RESP line.
            let mut wire = Vec::new();
            Reply::err(&e).encode(&mut wire);
            assert!(wire.ends_with(b"\r\n"));
            let body = &wire[..wire.len() - 2];
            assert!(
                !body.contains(&b'\n') && !body.contains(&b'\r'),
                "error reply is not one line: {wire:?}"
            );
            match decode(&wire) {
                Ok(Some((Frame::Error(t), n))) => {
                    assert_eq!(n, wire.len());
                    assert!(t.starts_with("ERR "));
                }
                other => panic!("error reply does not decode: {other:?} from {wire:?}"),
            }
        }
    }

    // The same bytes read as a reply stream (werk's own client side) must not panic either.
    if let Ok(Some((_, n))) = decode(data) {
        assert!(
            n > 0 && n <= data.len(),
            "decode used {n} of {}",
            data.len()
        );
    }

    if let Some(hello) = parse_hello(data) {
        assert!(
            data.starts_with(b"HELLO {"),
            "HELLO accepted without its prefix"
        );
        let _ = format!("{hello:?}");
    }
});
