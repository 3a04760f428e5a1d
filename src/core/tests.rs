//! Core unit tests, driven with a manual clock.

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::command::Command;

pub(crate) struct Harness {
    pub core: Core,
    pub clock: ManualClock,
}

impl Harness {
    pub fn new() -> Harness {
        let clock = ManualClock::new(Timestamp::parse_rfc3339("2026-07-01T12:00:00Z").unwrap());
        let core = Core::new(CoreConfig::default(), clock.now(), 7);
        Harness { core, clock }
    }

    pub fn hello(&mut self, conn: u64, wid: &str) {
        let h: HelloInput = serde_json::from_str(&format!(r#"{{"v":2,"wid":"{wid}"}}"#)).unwrap();
        self.core.hello(ConnId(conn), &h, self.clock.now());
    }

    pub fn run(&mut self, conn: u64, line: &str) -> Response {
        match Command::parse(line.as_bytes()) {
            Ok(cmd) => self.core.apply(ConnId(conn), cmd, self.clock.now()),
            Err(e) => Response::Reply(Reply::err(e)),
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.clock.advance_ms(ms);
        self.core.tick(self.clock.now());
    }

    pub fn wakes(&mut self) -> Vec<(ConnId, Reply)> {
        std::mem::take(&mut self.core.effects().wakes)
    }
}

fn bulk(r: Response) -> String {
    match r {
        Response::Reply(Reply::Bulk(b)) => String::from_utf8(b).unwrap(),
        other => panic!("expected bulk, got {other:?}"),
    }
}

#[test]
fn push_fetch_ack() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    assert_eq!(
        h.run(1, r#"PUSH {"jid":"abcdefgh","jobtype":"T","args":[]}"#),
        Response::Reply(Reply::Ok)
    );
    let job = bulk(h.run(1, "FETCH default"));
    assert!(job.contains(r#""jid":"abcdefgh""#), "{job}");
    assert_eq!(h.core.working().len(), 1);
    assert_eq!(
        h.run(1, r#"ACK {"jid":"abcdefgh"}"#),
        Response::Reply(Reply::Ok)
    );
    assert_eq!(h.core.working().len(), 0);
    assert_eq!(h.core.stats().processed, 1);
    // ACK is idempotent.
    assert_eq!(
        h.run(1, r#"ACK {"jid":"abcdefgh"}"#),
        Response::Reply(Reply::Ok)
    );
    assert_eq!(h.core.stats().processed, 1);
}
