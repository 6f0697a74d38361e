use super::*;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn password(user: &'static [u8], secret: &'static [u8]) -> Auth<'static> {
    Auth {
        method: AuthMethod::Password,
        user,
        secret,
    }
}

#[test]
fn patterns_match_exact_names_prefixes_and_everything() {
    let exact = Pattern::parse("audit").unwrap();
    assert!(exact.matches(b"audit"));
    assert!(!exact.matches(b"audit2"));
    assert!(!exact.matches(b"audi"));
    let prefix = Pattern::parse("orders.*").unwrap();
    assert!(prefix.matches(b"orders.eu"));
    assert!(prefix.matches(b"orders."));
    assert!(!prefix.matches(b"orders"));
    assert!(!prefix.matches(b"xorders.eu"));
    let any = Pattern::parse("*").unwrap();
    assert!(any.matches(b"anything"));
    assert_eq!(any, Pattern::Any);
}

#[test]
fn patterns_with_a_star_inside_or_empty_are_refused() {
    assert!(Pattern::parse("a*b").is_err());
    assert!(Pattern::parse("**").is_err());
    assert!(Pattern::parse("").is_err());
}

#[test]
fn a_password_verifies_against_its_hash_and_nothing_else() {
    let hash = hash_password_with(b"s3cret", b"saltsaltsalt", 1_000);
    let parsed = PasswordHash::parse(&hash).unwrap();
    assert!(parsed.verify(b"s3cret"));
    assert!(!parsed.verify(b"s3cret "));
    assert!(!parsed.verify(b""));
}

#[test]
fn malformed_password_hashes_are_refused() {
    for bad in [
        "",
        "pbkdf2-sha256$1000$c2FsdHNhbHQ=",
        "pbkdf2-sha512$1000$c2FsdHNhbHQ=$AAAA",
        "pbkdf2-sha256$0$c2FsdHNhbHQ=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "pbkdf2-sha256$x$c2FsdHNhbHQ=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ] {
        assert!(PasswordHash::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn users_authenticate_by_password_or_token() {
    let hash = hash_password_with(b"pw", b"saltsaltsalt", 1_000);
    let bot_token = token_hash(b"tok-123");
    let alice = UserDeclaration {
        name: "alice",
        password_hash: Some(&hash),
        token_hash: None,
        publish: &["a.*".to_owned()],
        subscribe: &[],
        admin: false,
    };
    let bot = UserDeclaration {
        name: "bot",
        password_hash: None,
        token_hash: Some(&bot_token),
        publish: &[],
        subscribe: &["*".to_owned()],
        admin: false,
    };
    let auth = Authenticator::new([alice, bot], None).unwrap();
    let (identity, permissions) = auth.verify(&password(b"alice", b"pw"), 0).unwrap();
    assert_eq!(identity, Identity::User("alice".into()));
    assert!(permissions.may_publish(b"a.b"));
    assert!(!permissions.may_subscribe(b"a.b"));
    assert!(auth.verify(&password(b"alice", b"nope"), 0).is_none());
    assert!(auth.verify(&password(b"bob", b"pw"), 0).is_none());
    // The token user has no password.
    assert!(auth.verify(&password(b"bot", b"tok-123"), 0).is_none());
    let token = Auth {
        method: AuthMethod::Token,
        user: b"",
        secret: b"tok-123",
    };
    let (identity, permissions) = auth.verify(&token, 0).unwrap();
    assert_eq!(identity, Identity::User("bot".into()));
    assert!(permissions.may_subscribe(b"x"));
    let wrong = Auth {
        secret: b"tok-124",
        ..token
    };
    assert!(auth.verify(&wrong, 0).is_none());
}

#[test]
fn signed_tokens_are_accepted_until_they_expire_and_only_with_the_right_key() {
    let key_b64 = STANDARD.encode(KEY);
    let auth = Authenticator::new([], Some(&key_b64)).unwrap();
    let token = sign_token(
        KEY,
        r#"{"subject":"svc","exp":1000,"publish":["p"],"admin":true}"#,
    )
    .unwrap();
    let signed = Auth {
        method: AuthMethod::SignedToken,
        user: b"",
        secret: token.as_bytes(),
    };
    let (identity, permissions) = auth.verify(&signed, 999).unwrap();
    assert_eq!(identity, Identity::Subject("svc".into()));
    assert!(permissions.admin && permissions.may_publish(b"p"));
    assert!(!permissions.may_subscribe(b"p"));
    assert!(auth.verify(&signed, 1000).is_none(), "expired");
    let other = sign_token(&[7u8; 32], r#"{"subject":"svc","exp":1000}"#).unwrap();
    let forged = Auth {
        secret: other.as_bytes(),
        ..signed
    };
    assert!(auth.verify(&forged, 0).is_none(), "wrong key");
    let mut tampered = token.clone().into_bytes();
    tampered[3] ^= 1;
    let tampered = Auth {
        secret: &tampered,
        ..signed
    };
    assert!(auth.verify(&tampered, 0).is_none(), "tampered payload");
    // Without a key no signed token is accepted.
    let none = Authenticator::default();
    assert!(none.verify(&signed, 0).is_none());
}

#[test]
fn users_declared_twice_or_sharing_a_token_are_refused() {
    let token = token_hash(b"t");
    let user = |name| UserDeclaration {
        name,
        password_hash: None,
        token_hash: Some(&token),
        publish: &[],
        subscribe: &[],
        admin: false,
    };
    let err = Authenticator::new([user("a"), user("a")], None).unwrap_err();
    assert!(err.contains("declared twice"), "{err}");
    let err = Authenticator::new([user("a"), user("b")], None).unwrap_err();
    assert!(err.contains("same as another user's"), "{err}");
    let err = Authenticator::new([user("")], None).unwrap_err();
    assert!(err.contains("1 to 255 bytes"), "{err}");
}

#[test]
fn short_or_invalid_signing_keys_are_refused() {
    assert!(parse_signing_key("c2hvcnQ=").is_err());
    assert!(parse_signing_key("not base64!").is_err());
    assert!(parse_signing_key(&STANDARD.encode(KEY)).is_ok());
}
