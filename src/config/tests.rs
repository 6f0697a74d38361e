use super::parse::edit_distance;
use super::*;

#[test]
fn empty_file_gives_the_embedded_defaults() {
    assert_eq!(Config::from_toml("").unwrap(), Config::default());
}

#[test]
fn example_weir_toml_matches_the_defaults_it_documents() {
    let text = include_str!("../../weir.toml");
    // Issue 13: the `[[queues]]` examples are comments now, so the file is the defaults.
    let config = Config::from_toml(text).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn unknown_keys_are_refused() {
    let err = Config::from_toml("max_queue_dept = 5").unwrap_err();
    assert!(err.to_string().contains("max_queue_dept"), "{err}");
}

/// Issue 13: a suggestion for a misspelt key; no Rust type names.
#[test]
fn a_misspelt_key_gets_a_suggestion_and_types_are_named_for_people() {
    let err = Config::from_toml("max_queue_dept = 5")
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `max_queue_depth`?"), "{err}");
    let err = Config::from_toml("zzzzzzzzzz = 5").unwrap_err().to_string();
    assert!(!err.contains("did you mean"), "{err}");
    let err = Config::from_toml("max_connections = -1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("a non-negative integer"), "{err}");
    assert!(!err.contains("usize"), "{err}");
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

/// Issue 13: --print-config hides the signing key and shows unset keys commented out.
#[test]
fn the_printed_config_hides_secrets_and_comments_unset_keys() {
    let key = "a".repeat(44);
    let config = Config {
        token_signing_key: Some(key.clone()),
        ..Config::default()
    };
    let text = config.to_toml();
    assert!(!text.contains(&key), "{text}");
    assert!(text.contains("# token_signing_key is set"), "{text}");
    assert!(text.contains("# http_listen = "), "{text}");
    assert!(text.contains("# tls_cert = "), "{text}");
    let default = Config::default().to_toml();
    assert!(default.contains("# token_signing_key = "), "{default}");
}

#[test]
fn zero_limits_are_refused_with_the_key_named() {
    let err = Config::from_toml("max_queue_depth = 0").unwrap_err();
    assert!(err.to_string().contains("max_queue_depth"), "{err}");
}

#[test]
fn busy_poll_may_be_off_but_not_longer_than_ten_ms() {
    assert_eq!(Config::default().busy_poll_us, 0, "off by default");
    assert_eq!(
        Config::from_toml("busy_poll_us = 50").unwrap().busy_poll_us,
        50
    );
    assert!(Config::from_toml("busy_poll_us = 10000").is_ok());
    let err = Config::from_toml("busy_poll_us = 10001").unwrap_err();
    assert!(err.to_string().contains("busy_poll_us"), "{err}");
}

#[test]
fn duplicate_queue_declarations_are_refused() {
    let text = "[[queues]]\nname = \"a\"\n[[queues]]\nname = \"a\"\n";
    assert!(Config::from_toml(text).is_err());
}

#[test]
fn listeners_inherit_top_level_values_and_apply_their_overrides() {
    let text = "max_queue_depth = 10\nreconnect_keep_alive_ms = 5000\n\
                [[listeners]]\nlisten = \"127.0.0.1:7401\"\n\
                [[listeners]]\nlisten = \"127.0.0.1:7402\"\n\
                reconnect_keep_alive_ms = 0\nmax_queue_depth_detached = 5\n";
    let config = Config::from_toml(text).unwrap();
    let listeners = config.listener_settings();
    assert_eq!(listeners.len(), 2);
    assert_eq!(listeners[0].reconnect_keep_alive, Duration::from_secs(5));
    assert_eq!(listeners[0].max_queue_depth, 10);
    assert_eq!(listeners[1].reconnect_keep_alive, Duration::ZERO);
    // The detached limit is never below the connected one.
    assert_eq!(listeners[1].max_queue_depth_detached, 10);
}

#[test]
fn the_same_address_twice_is_refused() {
    let text = "[[listeners]]\nlisten = \"127.0.0.1:7401\"\n\
                [[listeners]]\nlisten = \"127.0.0.1:7401\"\n";
    let err = Config::from_toml(text).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
}

#[test]
fn anonymous_sessions_default_to_loopback_listeners_only() {
    let text = "allow_anonymous = true\n[[listeners]]\nlisten = \"127.0.0.1:7401\"\n\
                [[listeners]]\nlisten = \"10.1.2.3:7402\"\n\
                [[listeners]]\nlisten = \"10.1.2.3:7403\"\nallow_anonymous = false\n\
                [[users]]\nname = \"u\"\ntoken_hash = \"sha256$\
                0000000000000000000000000000000000000000000000000000000000000000\"\n";
    let config = Config::from_toml(text).unwrap();
    let allowed: Vec<bool> = config
        .listener_settings()
        .iter()
        .map(|l| l.allow_anonymous)
        .collect();
    assert_eq!(allowed, [true, true, false]);
    let mut config = config;
    config.allow_anonymous = None;
    let allowed: Vec<bool> = config
        .listener_settings()
        .iter()
        .map(|l| l.allow_anonymous)
        .collect();
    assert_eq!(allowed, [true, false, false]);
}

#[test]
fn a_listener_nobody_could_use_is_refused() {
    let err = Config::from_toml("listen = \"10.1.2.3:7400\"").unwrap_err();
    assert!(err.to_string().contains("allow_anonymous"), "{err}");
}

#[test]
fn bad_users_are_refused_with_the_user_named() {
    for (text, expect) in [
        (
            "[[users]]\nname = \"a\"\n",
            "needs password_hash or token_hash",
        ),
        (
            "[[users]]\nname = \"a\"\npassword_hash = \"plain\"\n",
            "pbkdf2-sha256",
        ),
        (
            "[[users]]\nname = \"a\"\ntoken_hash = \"sha256$00\"\n",
            "token_hash",
        ),
        (
            "[[users]]\nname = \"a\"\ntoken_hash = \"sha256$\
             0000000000000000000000000000000000000000000000000000000000000000\"\n\
             publish = [\"a*b\"]\n",
            "a*b",
        ),
        ("token_signing_key = \"c2hvcnQ=\"\n", "at least 32 bytes"),
    ] {
        let err = Config::from_toml(text).unwrap_err().to_string();
        assert!(err.contains(expect), "{text}: {err}");
    }
}

#[test]
fn metrics_listen_is_accepted_as_http_listen_with_a_warning() {
    let config = Config::from_toml("metrics_listen = \"127.0.0.1:9740\"\n").unwrap();
    assert_eq!(config.http_listen, Some("127.0.0.1:9740".parse().unwrap()));
    assert_eq!(
        config.warnings,
        ["metrics_listen is deprecated, it is now called http_listen"]
    );
}

#[test]
fn a_websocket_listener_gets_its_origins_and_a_message_limit_of_one_frame() {
    let text = "websocket_allowed_origins = [\"https://a.example\"]\n\
                [[listeners]]\nlisten = \"127.0.0.1:7400\"\n\
                [[listeners]]\nlisten = \"127.0.0.1:7480\"\ntransport = \"websocket\"\n\
                max_frame_len = 65536\n";
    let config = Config::from_toml(text).unwrap();
    let settings = config.websocket_settings();
    assert_eq!(settings[0], None);
    let ws = settings[1].as_ref().unwrap();
    assert_eq!(ws.allowed_origins, ["https://a.example"]);
    assert_eq!(ws.max_message_len, 65_536 + 4);
    assert!(Config::from_toml("transport = \"quic\"\n").is_err());
}

#[test]
fn old_key_names_are_accepted_with_one_warning_each() {
    let text = "inflight_window = 7\nmax_queue_depth_disconnected = 200001\n\
                max_queue_bytes_disconnected = 200000000\n\
                [[listeners]]\nlisten = \"127.0.0.1:7401\"\ninflight_window = 3\n";
    let config = Config::from_toml(text).unwrap();
    assert_eq!(config.in_flight_window, 7);
    assert_eq!(config.max_queue_depth_detached, 200_001);
    assert_eq!(config.max_queue_bytes_detached, 200_000_000);
    assert_eq!(config.listeners[0].in_flight_window, Some(3));
    assert_eq!(
        config.warnings,
        [
            "inflight_window is deprecated, it is now called in_flight_window",
            "max_queue_depth_disconnected is deprecated, it is now called \
             max_queue_depth_detached",
            "max_queue_bytes_disconnected is deprecated, it is now called \
             max_queue_bytes_detached",
            "listeners[0].inflight_window is deprecated, it is now called \
             listeners[0].in_flight_window",
        ]
    );
    // The new names draw no warning, and the printed config uses them.
    let new = Config::from_toml("in_flight_window = 7\nmax_queue_depth_detached = 1\n");
    assert!(new.unwrap().warnings.is_empty());
    let printed = config.to_toml();
    assert!(printed.contains("in_flight_window = 7"), "{printed}");
    assert!(!printed.contains("disconnected") && !printed.contains("inflight"));
}

#[test]
fn an_old_and_a_new_name_together_are_refused() {
    let err = Config::from_toml("inflight_window = 1\nin_flight_window = 2\n").unwrap_err();
    assert!(err.to_string().contains("in_flight_window"), "{err}");
}

#[test]
fn printed_config_parses_back_to_itself() {
    let config = Config::default();
    assert_eq!(Config::from_toml(&config.to_toml()).unwrap(), config);
}

/// Issue 9: `max_frame_len_before_hello = 303` passed validation although an authenticated
/// HELLO can be over 2,600 bytes; the bound is now the largest HELLO the encoder writes.
#[test]
fn max_frame_len_before_hello_must_admit_the_largest_authenticated_hello() {
    let largest = crate::protocol::codec::max_hello_len();
    assert!(largest > 2_600, "{largest}");
    let too_small = Config {
        max_frame_len_before_hello: 303,
        ..Config::default()
    };
    let error = too_small.validate().unwrap_err().to_string();
    assert!(error.contains(&largest.to_string()), "{error}");
    let exact = Config {
        max_frame_len_before_hello: largest as u32,
        ..Config::default()
    };
    assert!(exact.validate().is_ok());
    let one_less = Config {
        max_frame_len_before_hello: largest as u32 - 1,
        ..Config::default()
    };
    assert!(one_less.validate().is_err());
}
