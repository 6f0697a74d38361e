//! Parsing help: deprecated key names and plainer parse errors.

/// Keys renamed so that the config, the metrics and protocol.md use one word (issue 9): old,
/// new. The old names stay accepted (serde `alias`) and draw a warning at load.
const RENAMED_KEYS: [(&str, &str); 4] = [
    ("metrics_listen", "http_listen"),
    ("inflight_window", "in_flight_window"),
    ("max_queue_depth_disconnected", "max_queue_depth_detached"),
    ("max_queue_bytes_disconnected", "max_queue_bytes_detached"),
];

/// One warning per old key name used in `text`, at the top level or in a `[[listeners]]` table.
pub(super) fn deprecated_keys(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let listeners = table
        .get("listeners")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, l)| Some((format!("listeners[{i}]."), l.as_table()?)));
    std::iter::once((String::new(), &table))
        .chain(listeners)
        .flat_map(|(at, keys)| {
            RENAMED_KEYS
                .iter()
                .filter(|(old, _)| keys.contains_key(*old))
                .map(move |(old, new)| {
                    format!("{at}{old} is deprecated, it is now called {at}{new}")
                })
        })
        .collect()
}

/// A serde/toml message made plainer: "did you mean" for an unknown key (the closest
/// expected key by edit distance), and "a non-negative integer" instead of Rust type names.
pub(super) fn explain_parse_error(message: &str) -> String {
    let mut text = message.to_owned();
    for rust_type in ["usize", "u64", "u32", "u16", "u8"] {
        text = text.replace(
            &format!("expected {rust_type}"),
            "expected a non-negative integer",
        );
    }
    let unknown = message
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'));
    if let Some((field, rest)) = unknown {
        let expected = rest.split('`').skip(1).step_by(2);
        let best = expected
            .map(|key| (edit_distance(field, key), key))
            .min_by_key(|(distance, _)| *distance);
        if let Some((distance, key)) = best {
            if distance <= (field.len() / 3).max(2) {
                text = text.trim_end().to_owned();
                text += &format!("\ndid you mean `{key}`?\n");
            }
        }
    }
    text
}

/// Levenshtein distance between two keys (short ASCII strings).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}
