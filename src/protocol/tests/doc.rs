//! protocol.md against the code: the error-code table and how each code is sent, the op
//! table, the section headings, the STATS_REPLY fields, the worked example's bytes and the
//! resume examples' consistency with §Reconnection.

use std::collections::BTreeSet;

use super::support::{
    decode_all, example_welcome, repo_path, Owned, OwnedDeliver, OwnedError, OwnedHello,
    OwnedPublish, OwnedSubscription, EXAMPLE_TOKEN,
};
use crate::protocol::codec::decode;
use crate::protocol::frame::{
    AuthMethod, Dropped, Frame, Resume, Welcome, DELIVER_DELIVERY_COUNT, DELIVER_REDELIVERED,
    DROPPED_CONFLATED, OUTCOME_LOST, OUTCOME_NEW, OUTCOME_RESUMED, START_POSITION,
};
use crate::protocol::header::Op;
use crate::protocol::stats::{
    ClosedSessionStats, GroupStats, PatternStats, QueueStats, ServerStats, SessionStats,
    StatsReport, SubscriptionStats,
};
use crate::protocol::{ErrorCode, Start, MAX_FRAME_LEN, RESUME_TOKEN_LEN};

#[test]
fn error_code_table_in_protocol_md_matches_error_code_all() {
    let doc = protocol_md();
    let rows = markdown_table_under(&doc, "## Error codes");
    assert_eq!(rows[0], ["code", "name", "meaning"], "column headings");
    let rows = &rows[1..];
    assert_eq!(
        rows.len(),
        ErrorCode::ALL.len(),
        "one row per ErrorCode::ALL entry"
    );
    for (row, &code) in rows.iter().zip(ErrorCode::ALL) {
        assert_eq!(row.len(), 3, "row {row:?}");
        assert_eq!(
            row[0],
            format!("0x{:04X}", code as u16),
            "code of {}",
            code.name()
        );
        assert_eq!(row[1], code.name());
        assert_eq!(row[2], code.description(), "meaning of {}", code.name());
    }
}

#[test]
fn every_error_code_says_how_it_is_sent_in_protocol_md() {
    let doc = protocol_md();
    let rows = markdown_table_with_columns(&doc, "## Error codes", &["code", "sent as", "when"]);
    let listed: BTreeSet<&str> = rows.iter().flat_map(|row| row[0].split(", ")).collect();
    for &code in ErrorCode::ALL {
        assert!(
            listed.contains(code.name()),
            "{} is not in the table",
            code.name()
        );
    }
    for name in listed {
        assert!(
            ErrorCode::ALL.iter().any(|code| code.name() == name),
            "{name} is not an error code"
        );
    }
}

#[test]
fn op_table_in_protocol_md_matches_op_all() {
    let doc = protocol_md();
    let rows = markdown_table_under(&doc, "## Op codes");
    assert_eq!(
        rows[0],
        ["code", "name", "direction", "meaning"],
        "column headings"
    );
    let rows = &rows[1..];
    assert_eq!(rows.len(), Op::ALL.len(), "one row per Op::ALL entry");
    for (row, &op) in rows.iter().zip(Op::ALL) {
        assert_eq!(row[0], format!("0x{:02X}", op as u8), "code of {op:?}");
        assert_eq!(row[1], op.name());
        let direction = match op {
            Op::Ping | Op::Pong => "both",
            _ if (op as u8) < 0x80 => "C→S",
            _ => "S→C",
        };
        assert_eq!(row[2], direction, "direction of {op:?}");
    }
}

#[test]
fn every_op_has_its_own_section_in_protocol_md() {
    let doc = protocol_md();
    let headings: BTreeSet<&str> = doc.lines().filter(|l| l.starts_with("## ")).collect();
    for &op in Op::ALL {
        let heading = format!("## {}", op.name());
        assert!(headings.contains(heading.as_str()), "missing `{heading}`");
    }
    for heading in [
        "## Framing",
        "## Flags",
        "## Error codes",
        "## Limits",
        "## Session state machine",
        "## Reconnection",
    ] {
        assert!(headings.contains(heading), "missing `{heading}`");
    }
}

#[test]
fn stats_reply_fields_in_protocol_md_match_the_stats_types() {
    let report = StatsReport {
        server: ServerStats {
            closes: [("CLIENT_BYE".to_owned(), 1)].into_iter().collect(),
            losses: [("SESSION_EXPIRED".to_owned(), 1)].into_iter().collect(),
            ..ServerStats::default()
        },
        sessions: vec![SessionStats {
            subscriptions: vec![SubscriptionStats {
                queue: "db".to_owned(),
                event: Some("update".to_owned()),
            }],
            patterns: vec![PatternStats {
                pattern: "orders.>".to_owned(),
                event: Some("created".to_owned()),
                queues: 2,
            }],
            detached_ms: Some(1),
            expires_in_ms: Some(1),
            ..SessionStats::default()
        }],
        queues: vec![QueueStats::default()],
        sessions_omitted: 0,
        queues_omitted: 0,
        omitted_queue_totals: QueueStats::default(),
        closed_sessions: vec![ClosedSessionStats::default()],
        groups: vec![GroupStats {
            event: Some("resize".to_owned()),
            ..GroupStats::default()
        }],
    };
    let json = serde_json::to_value(&report).unwrap();
    let mut from_code = Vec::new();
    json_fields(&json, "", &mut from_code);

    let doc = protocol_md();
    let rows = markdown_table_with_columns(&doc, "## STATS_REPLY", &["field", "type", "meaning"]);
    let from_doc: Vec<(String, String)> = rows
        .iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    let mut sorted_doc = from_doc.clone();
    sorted_doc.sort();
    from_code.sort();
    let names = |fields: &[(String, String)]| -> Vec<String> {
        fields.iter().map(|(name, _)| name.clone()).collect()
    };
    assert_eq!(names(&sorted_doc), names(&from_code), "field names");
    for ((field, doc_type), (_, code_type)) in sorted_doc.iter().zip(&from_code) {
        assert!(
            doc_type.starts_with(code_type.as_str()),
            "{field}: {doc_type} vs {code_type}"
        );
    }
}

/// Issue 13: the example had `n` for numbers and `...`, so a client author could not paste it
/// into a test. It must parse, as a `StatsReport` too, and name exactly the documented fields.
#[test]
fn stats_reply_example_in_protocol_md_is_valid_json() {
    let doc = protocol_md();
    let section = doc
        .split("\n## STATS_REPLY\n")
        .nth(1)
        .expect("a STATS_REPLY section");
    let example = section
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a json block in STATS_REPLY");
    let value: serde_json::Value = serde_json::from_str(example).expect("valid JSON");
    let report: StatsReport = serde_json::from_value(value.clone()).expect("a StatsReport");
    assert_eq!(report.sessions.len(), 2);
    let mut from_example = Vec::new();
    json_fields(&value, "", &mut from_example);
    let mut from_example: Vec<String> = from_example.into_iter().map(|(name, _)| name).collect();
    from_example.sort();
    let rows = markdown_table_with_columns(&doc, "## STATS_REPLY", &["field", "type", "meaning"]);
    let mut from_doc: Vec<String> = rows.iter().map(|row| row[0].clone()).collect();
    from_doc.sort();
    assert_eq!(
        from_example, from_doc,
        "the example shows every documented field"
    );
}

/// Flattens a JSON value into (path, JSON type) rows the way protocol.md's STATS_REPLY table
/// lists them: `a.b` for object members, `a[]` for an array and then its first element's
/// members under `a[].`; a map of counters (`closes`) is one `object` row.
fn json_fields(value: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(_) if path.ends_with("closes") || path.ends_with("losses") => {
            out.push((path.to_owned(), "object".into()))
        }
        Value::Object(map) => {
            for (key, member) in map {
                json_fields(member, &join(key), out);
            }
        }
        Value::Array(items) => {
            let path = format!("{path}[]");
            out.push((path.clone(), "array".into()));
            if let Some(first) = items.first() {
                json_fields(first, &path, out);
            }
        }
        Value::String(_) => out.push((path.to_owned(), "string".into())),
        Value::Number(_) => out.push((path.to_owned(), "integer".into())),
        Value::Bool(_) => out.push((path.to_owned(), "boolean".into())),
        Value::Null => out.push((path.to_owned(), "null".into())),
    }
}

#[test]
fn worked_example_bytes_match_the_encoders() {
    let doc = protocol_md();
    let examples = worked_example();
    for (step, frame) in &examples {
        let bytes = frame.encoded();
        let hex = to_hex_lines(&bytes);
        assert!(
            doc.contains(&format!("```\n{hex}\n```")),
            "{step}: protocol.md does not show these bytes in a code block of their own:\n{hex}"
        );
        let (decoded, used) = decode(&bytes, MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(decoded, frame.frame(), "{step}");
        assert_eq!(used, bytes.len(), "{step}");
    }
    // PING and PONG share one code block in protocol.md.
    let ping_pong = format!(
        "```\n{}\n{}\n```",
        to_hex_lines(&Owned::Ping(0x1122_3344_5566_7788).encoded()),
        to_hex_lines(&Owned::Pong(0x1122_3344_5566_7788).encoded()),
    );
    assert!(doc.contains(&ping_pong), "PING / PONG:\n{ping_pong}");

    let stream: Vec<u8> = examples.iter().flat_map(|(_, f)| f.encoded()).collect();
    assert_eq!(decode_all(&stream).0.len(), examples.len());
}

/// The frames of protocol.md §Worked example, in the order shown there (PING and PONG apart).
pub(super) fn worked_example() -> Vec<(&'static str, Owned)> {
    let (resume, resumed, redelivered, lost) = resume_example();
    vec![
        ("HELLO", Owned::hello(0, b"demo", None)),
        (
            "WELCOME",
            example_welcome(OUTCOME_NEW, None, Some(0), EXAMPLE_SESSION_ID, 1024),
        ),
        (
            "SUBSCRIBE",
            Owned::subscription(Op::Subscribe, b"db", Some(b"update")),
        ),
        (
            "SUBSCRIBED",
            Owned::subscription(Op::Subscribed, b"db", Some(b"update")),
        ),
        ("PUBLISH", Owned::publish(1, b"db", b"update", None, b"hi")),
        ("RECEIPT", Owned::Receipt(1)),
        ("DELIVER", Owned::deliver(1, 1, 0, b"db", b"update", b"hi")),
        ("ACK", Owned::ack(1, vec![])),
        ("BYE", Owned::Bye),
        ("GOODBYE", Owned::goodbye(ErrorCode::ClientBye, b"bye")),
        // Resuming a session, and a resume that fails.
        (
            "HELLO with RESUME",
            Owned::hello(256, b"demo", Some(resume)),
        ),
        ("WELCOME resumed", Owned::Welcome(resumed)),
        ("DELIVER redelivered", redelivered),
        ("WELCOME lost", Owned::Welcome(lost)),
        // More frames.
        (
            "SUBSCRIBE all events",
            Owned::subscription(Op::Subscribe, b"db", None),
        ),
        (
            "PUBLISH with key",
            Owned::publish(2, b"px", b"", Some(b"EURUSD"), b"1.08"),
        ),
        ("ACK with list", Owned::ack(3, vec![5, 7])),
        ("STATS", Owned::Stats),
        (
            "ERROR",
            Owned::error(ErrorCode::PublishSeqGap, 5, b"expected 3"),
        ),
        // Extensions (issue 13).
        ("HELLO with EXTENSIONS", hello_with_extensions()),
        ("WELCOME with the keep-alive", {
            let Owned::Welcome(welcome) =
                example_welcome(OUTCOME_NEW, None, Some(0), EXAMPLE_SESSION_ID, 1024)
            else {
                unreachable!()
            };
            Owned::Welcome(Welcome {
                reconnect_keep_alive_ms: Some(60_000),
                ..welcome
            })
        }),
        ("SUBSCRIBE with GROUP", {
            let Owned::Subscription { op, sub } = Owned::subscription(Op::Subscribe, b"jobs", None)
            else {
                unreachable!()
            };
            Owned::Subscription {
                op,
                sub: OwnedSubscription {
                    group: Some(b"w".to_vec()),
                    ..sub
                },
            }
        }),
        ("PUBLISH with TTL", {
            let Owned::Publish(publish) = Owned::publish(3, b"px", b"", None, b"1.08") else {
                unreachable!()
            };
            Owned::Publish(OwnedPublish {
                ttl_ms: Some(5_000),
                ..publish
            })
        }),
        ("SUBSCRIBE with PATTERN", {
            let Owned::Subscription { op, sub } =
                Owned::subscription(Op::Subscribe, b"orders.>", None)
            else {
                unreachable!()
            };
            Owned::Subscription {
                op,
                sub: OwnedSubscription {
                    is_pattern: true,
                    ..sub
                },
            }
        }),
        ("DELIVER with DELIVERY_COUNT", {
            let Owned::Deliver(deliver) =
                Owned::deliver(9, 4, DELIVER_DELIVERY_COUNT, b"jobs", b"", b"hi")
            else {
                unreachable!()
            };
            Owned::Deliver(OwnedDeliver {
                delivery_count: Some(3),
                ..deliver
            })
        }),
        (
            "DROPPED",
            Owned::Dropped(Dropped {
                reason: DROPPED_CONFLATED,
                count: 2,
                total: 7,
            }),
        ),
        (
            "ERROR with REF_OP",
            Owned::Error(OwnedError {
                code: Ok(ErrorCode::NotAuthorized),
                fatal: false,
                ref_seq: 0,
                ref_op: Some(Op::Subscribe as u8),
                text: b"no subscribe to orders.eu".to_vec(),
            }),
        ),
        // Authentication.
        (
            "HELLO with AUTH",
            Owned::hello_auth(
                0,
                b"demo",
                None,
                (AuthMethod::Password, b"alice", b"s3cret"),
            ),
        ),
        (
            "ERROR not authorized",
            Owned::error_nonfatal(ErrorCode::NotAuthorized, 2, b"no publish to px"),
        ),
        // Durable queues.
        (
            "SUBSCRIBE with START",
            Owned::subscription_from(
                Op::Subscribe,
                b"jobs",
                Start {
                    from: START_POSITION,
                    value: 1,
                    first_position: 0,
                    skipped: 0,
                },
            ),
        ),
        (
            "SUBSCRIBED with START",
            Owned::subscription_from(
                Op::Subscribed,
                b"jobs",
                Start {
                    from: START_POSITION,
                    value: 1,
                    first_position: 3,
                    skipped: 2,
                },
            ),
        ),
    ]
}

fn hello_with_extensions() -> Owned {
    let Owned::Hello(hello) = Owned::hello(0, b"demo", None) else {
        unreachable!()
    };
    Owned::Hello(OwnedHello {
        extensions: true,
        ..hello
    })
}

/// The session id of the main worked example: the server's per-run epoch `0x5a3c91e2` in the
/// high 32 bits, the session counter 1 in the low 32 bits.
const EXAMPLE_SESSION_ID: u64 = 0x5a3c_91e2_0000_0001;

/// protocol.md §Resuming a session and §A resume that fails: the resuming HELLO, its WELCOME
/// RESUMED, the redelivered DELIVER that follows, and the WELCOME LOST the same HELLO gets once
/// the session has expired.
fn resume_example() -> (Resume, Welcome, Owned, Welcome) {
    let resume = Resume {
        session_id: 0x5a3c_91e2_0000_0007,
        resume_token: EXAMPLE_TOKEN,
        last_delivery_seq: 41,
        first_resendable_publish_seq: 12,
    };
    let Owned::Welcome(mut resumed) =
        example_welcome(OUTCOME_RESUMED, None, Some(0), resume.session_id, 256)
    else {
        unreachable!("example_welcome builds a WELCOME")
    };
    resumed.last_publish_seq = 12;
    let redelivered = Owned::deliver(
        resume.last_delivery_seq + 1,
        1234,
        DELIVER_REDELIVERED,
        b"db",
        b"update",
        b"hi",
    );
    let Owned::Welcome(mut lost) = example_welcome(
        OUTCOME_LOST,
        Some(ErrorCode::SessionExpired),
        Some(3),
        0x5a3c_91e2_0000_0009,
        256,
    ) else {
        unreachable!("example_welcome builds a WELCOME")
    };
    lost.resume_token = NEW_TOKEN;
    (resume, resumed, redelivered, lost)
}

/// The fresh resume token of the LOST example's new session.
const NEW_TOKEN: [u8; RESUME_TOKEN_LEN] = [
    0x9b, 0x07, 0x4e, 0xd1, 0x22, 0x6c, 0xf0, 0x85, 0x3a, 0x5d, 0xc8, 0x71, 0x0e, 0xb4, 0x69, 0x2f,
];

#[test]
fn resume_examples_follow_the_rules_of_protocol_md() {
    let (resume, resumed, redelivered, lost) = resume_example();
    // RESUMED: the same session and token; publishes up to last_publish_seq were accepted,
    // which the client's first_resendable_publish_seq must not exceed by more than 1.
    assert_eq!(resumed.outcome, OUTCOME_RESUMED);
    assert_eq!(
        (resumed.session_id, resumed.resume_token),
        (resume.session_id, resume.resume_token)
    );
    assert_eq!((resumed.lost_reason, resumed.missed), (None, Some(0)));
    assert!(resume.first_resendable_publish_seq <= resumed.last_publish_seq + 1);
    // The first redelivery is the seq after the last one the client received, flagged.
    let Frame::Deliver(deliver) = redelivered.frame() else {
        panic!("a DELIVER")
    };
    assert_eq!(deliver.seq, resume.last_delivery_seq + 1);
    assert_eq!(deliver.flags, DELIVER_REDELIVERED);
    // LOST: a new session with a new id and token, from the same server run (same epoch).
    assert_eq!(lost.outcome, OUTCOME_LOST);
    assert_ne!(lost.session_id, resume.session_id);
    assert_eq!(lost.session_id >> 32, resume.session_id >> 32, "same epoch");
    assert_eq!(
        resume.session_id >> 32,
        EXAMPLE_SESSION_ID >> 32,
        "same epoch"
    );
    assert_ne!(lost.resume_token, resume.resume_token);
    assert_eq!(lost.last_publish_seq, 0);
}

/// Hex as protocol.md prints it: lower case, 16 bytes a line.
fn to_hex_lines(bytes: &[u8]) -> String {
    let lines: Vec<String> = bytes
        .chunks(16)
        .map(|line| {
            let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            hex.join(" ")
        })
        .collect();
    lines.join("\n")
}

fn protocol_md() -> String {
    std::fs::read_to_string(repo_path("protocol.md")).unwrap()
}

/// The first markdown table in the section `heading`: heading row first, then data rows,
/// cells trimmed, the `| --- |` row left out.
fn markdown_table_under(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let tables = tables_in_section(doc, heading);
    let first = tables.into_iter().next();
    first.unwrap_or_else(|| panic!("no table under `{heading}` in protocol.md"))
}

/// The data rows of the table in section `heading` whose heading row is `columns`.
fn markdown_table_with_columns(doc: &str, heading: &str, columns: &[&str]) -> Vec<Vec<String>> {
    let tables = tables_in_section(doc, heading);
    let table = tables.into_iter().find(|table| table[0] == columns);
    let table = table.unwrap_or_else(|| panic!("no {columns:?} table under `{heading}`"));
    table[1..].to_vec()
}

/// Every table between the line `heading` and the next `## ` heading.
fn tables_in_section(doc: &str, heading: &str) -> Vec<Vec<Vec<String>>> {
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    let mut in_table = false;
    let section = doc
        .lines()
        .skip_while(|line| line.trim_end() != heading)
        .skip(1)
        .take_while(|line| !line.starts_with("## "));
    for line in section {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
        let cells: Vec<String> = inner
            .split('|')
            .map(|cell| cell.trim().to_owned())
            .collect();
        if cells
            .iter()
            .all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-'))
        {
            continue;
        }
        if !in_table {
            tables.push(Vec::new());
            in_table = true;
        }
        if let Some(table) = tables.last_mut() {
            table.push(cells);
        }
    }
    tables
}
