//! `GET /events` (spec §4.3, §8.3): newline-delimited JSON, one object per event, `init`
//! first, then every `tx` and `primaryChange` the store publishes, until the client leaves,
//! the server shuts down, or the subscriber falls [`EVENT_QUEUE_DEPTH_MAX`] events behind
//! (LiteFS drops such a subscriber; the response then ends).
//!
//! One task per response moves events from the store's broadcast into a small bounded body
//! channel; hyper sends each line as soon as it is queued. A client that stops reading fills
//! the socket, then the body channel, then the task's own queue of at most
//! [`EVENT_QUEUE_DEPTH_MAX`] events: the subscriber is then dropped. The store's broadcast
//! never blocks a commit in any case.
//!
//! The JSON is written by hand to match Go's `encoding/json` byte for byte (field order, HTML
//! escaping, `omitempty`), as LiteFS's `json.NewEncoder(w).Encode(event)` writes it.

use super::App;
use super::body::{Block, ChannelBody};
use super::routes::Body;
use crate::ltx::format_timestamp_trimmed;
use crate::store::{EVENT_QUEUE_DEPTH_MAX, Event};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

/// Lines queued between the event task and the connection. Small: the store's broadcast is
/// the buffer that counts (its depth decides when a slow subscriber is dropped).
const EVENT_BODY_QUEUE_DEPTH_MAX: usize = 16;

pub(super) async fn handle(app: Arc<App>) -> Response<Body> {
    // Subscribe before reading the state for `init`, so no event in between is lost (one
    // may be reported twice: in `init` and as an event).
    let events = app.store.subscribe_events();
    let init = encode_init(app.store.is_writable(), &app.store.primary_hostname());
    let (tx, rx) = mpsc::channel(EVENT_BODY_QUEUE_DEPTH_MAX);
    // The channel is new and empty: this cannot fail for lack of room.
    let _ = tx.try_send(Ok(Bytes::from(init)));
    app.metrics.event_stream_started();
    tokio::spawn(run(app, events, tx));
    let mut resp = Response::new(ChannelBody::new(rx).boxed());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Forwards events until the client leaves, the server stops or the subscriber is dropped.
///
/// The task keeps receiving from the store while the connection is slow, into `pending`: the
/// subscriber's buffer, as LiteFS's 1024-event channel. Once it is full (the client stopped
/// reading and the socket, hyper and the body channel are full too), or once the task itself
/// fell that far behind the store's broadcast, the subscriber is dropped. Receiving while
/// blocked matters: a task waiting for room in the body channel would never notice it lagged.
async fn run(app: Arc<App>, mut events: broadcast::Receiver<Event>, tx: mpsc::Sender<Block>) {
    let mut shutdown = app.shutdown.clone();
    let mut pending: VecDeque<Event> = VecDeque::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            // Sending first: a steady stream of events must not starve the connection.
            biased;
            _ = shutdown.changed() => break,
            _ = tx.closed() => break,
            permit = tx.reserve(), if !pending.is_empty() => {
                let (Ok(permit), Some(event)) = (permit, pending.pop_front()) else { break };
                permit.send(Ok(Bytes::from(encode_event(&event))));
            }
            event = events.recv() => match event {
                Ok(event) if pending.len() < EVENT_QUEUE_DEPTH_MAX => pending.push_back(event),
                Ok(_) => {
                    eprintln!(
                        "litefs: events: a subscriber stopped reading: {EVENT_QUEUE_DEPTH_MAX} events queued for it; its response ends, reconnect to resume"
                    );
                    break;
                }
                Err(RecvError::Lagged(missed)) => {
                    eprintln!(
                        "litefs: events: a subscriber fell {missed} events behind the store's {EVENT_QUEUE_DEPTH_MAX}-event feed; its response ends, reconnect to resume"
                    );
                    break;
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
    // Unsubscribe first, then end the body (the client sees the end of the response), so a
    // client that saw the end never still counts as a subscriber.
    drop(events);
    app.metrics.event_stream_ended();
    drop(tx);
}

/// The first line of every response: `{"type":"init","data":{"isPrimary":…,"hostname":…}}`.
pub fn encode_init(is_primary: bool, hostname: &str) -> String {
    let mut out = String::with_capacity(64);
    out.push_str(r#"{"type":"init","data":"#);
    encode_role(&mut out, is_primary, hostname);
    out.push_str("}\n");
    out
}

/// One event as the line LiteFS writes for it (newline included).
pub fn encode_event(event: &Event) -> String {
    let mut out = String::with_capacity(192);
    match event {
        Event::Tx {
            db,
            txid,
            post_apply_checksum,
            page_size,
            commit,
            timestamp_ms,
        } => {
            out.push_str(r#"{"type":"tx""#);
            if !db.is_empty() {
                out.push_str(r#","db":"#);
                push_go_json_string(&mut out, db);
            }
            let _ = write!(
                out,
                r#","data":{{"txID":"{txid}","postApplyChecksum":"{post_apply_checksum}","pageSize":{page_size},"commit":{commit},"timestamp":"{}"}}}}"#,
                format_timestamp_trimmed(*timestamp_ms)
            );
        }
        Event::PrimaryChange {
            is_primary,
            hostname,
        } => {
            out.push_str(r#"{"type":"primaryChange","data":"#);
            encode_role(&mut out, *is_primary, hostname);
            out.push('}');
        }
    }
    out.push('\n');
    out
}

/// `{"isPrimary":…}` with `"hostname"` only when not empty (Go `omitempty`).
fn encode_role(out: &mut String, is_primary: bool, hostname: &str) {
    let _ = write!(out, r#"{{"isPrimary":{is_primary}"#);
    if !hostname.is_empty() {
        out.push_str(r#","hostname":"#);
        push_go_json_string(out, hostname);
    }
    out.push('}');
}

/// A JSON string as Go's `encoding/json` writes it with HTML escaping on (the default for
/// `json.NewEncoder`): `<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes; control characters
/// other than `\n`, `\r`, `\t` as `\u00xx` (Go before 1.22, which LiteFS v0.5 was built with,
/// also writes `\b` and `\f` that way).
fn push_go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Checksum, TxId};

    #[test]
    fn init_lines_omit_an_empty_hostname() {
        assert_eq!(
            encode_init(true, ""),
            "{\"type\":\"init\",\"data\":{\"isPrimary\":true}}\n"
        );
        assert_eq!(
            encode_init(false, "node-a"),
            "{\"type\":\"init\",\"data\":{\"isPrimary\":false,\"hostname\":\"node-a\"}}\n"
        );
    }

    #[test]
    fn tx_lines_match_go_byte_for_byte() {
        let event = Event::Tx {
            db: Arc::from("my.db"),
            txid: TxId(0x3e8),
            post_apply_checksum: Checksum(0x8dc6_b8b4_1d2a_0b1e),
            page_size: 4096,
            commit: 17,
            // 2023-09-06T19:12:34.985Z, the spec's example.
            timestamp_ms: 1_694_027_554_985,
        };
        let want = concat!(
            r#"{"type":"tx","db":"my.db","data":{"txID":"00000000000003e8","#,
            r#""postApplyChecksum":"8dc6b8b41d2a0b1e","pageSize":4096,"commit":17,"#,
            r#""timestamp":"2023-09-06T19:12:34.985Z"}}"#,
            "\n"
        );
        let got = encode_event(&event);
        assert_eq!(got, want, "\n got: {got}want: {want}");
        serde_json::from_str::<serde_json::Value>(&got).unwrap();
    }

    #[test]
    fn timestamps_trim_zeros_like_go_rfc3339nano() {
        let line = |timestamp_ms| {
            encode_event(&Event::Tx {
                db: Arc::from("d"),
                txid: TxId(1),
                post_apply_checksum: Checksum(0),
                page_size: 512,
                commit: 0,
                timestamp_ms,
            })
        };
        assert!(line(1_700_000_000_000).contains(r#""timestamp":"2023-11-14T22:13:20Z""#));
        assert!(line(1_700_000_000_100).contains(r#""timestamp":"2023-11-14T22:13:20.1Z""#));
        assert!(line(1_700_000_000_120).contains(r#""timestamp":"2023-11-14T22:13:20.12Z""#));
        assert!(line(1_700_000_000_000).contains(r#""commit":0,"#));
    }

    #[test]
    fn primary_change_lines() {
        let line = |is_primary, hostname: &str| {
            encode_event(&Event::PrimaryChange {
                is_primary,
                hostname: hostname.into(),
            })
        };
        assert_eq!(
            line(true, ""),
            "{\"type\":\"primaryChange\",\"data\":{\"isPrimary\":true}}\n"
        );
        assert_eq!(
            line(false, "primary-1"),
            "{\"type\":\"primaryChange\",\"data\":{\"isPrimary\":false,\"hostname\":\"primary-1\"}}\n"
        );
    }

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        let mut out = String::new();
        push_go_json_string(
            &mut out,
            "a\"b\\c\nd\re\tf\u{1}g<h>i&j\u{2028}k\u{2029}l\u{8}m\u{c}é",
        );
        let want = r#""a\"b\\c\nd\re\tf\u0001g\u003ch\u003ei\u0026j\u2028k\u2029l\u0008m\u000cé""#;
        assert_eq!(out, want, "\n got: {out}\nwant: {want}");
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(
            back,
            "a\"b\\c\nd\re\tf\u{1}g<h>i&j\u{2028}k\u{2029}l\u{8}m\u{c}é"
        );
    }
}
