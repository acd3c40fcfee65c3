//! Property tests standing in for a fuzzer (this is a stable toolchain, so
//! no cargo-fuzz): the functions that see raw client input — JSON decoding,
//! e-mail and password parsing, token verification — are driven with
//! arbitrary and adversarial input. None may panic; each must accept
//! exactly what it documents and nothing else.

use authd::domain::{now_ms, Email, Password, Session, SigningKeys, TokenCodec, UserId};
use authd::http::json::{decode, CredentialsBody, RevokeBody, RevokeScopeField, TokenBody};
use authd::http::ApiError;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

const CASES: u32 = 512;
const SECRET: &[u8] = b"properties-secret-key-0123456789abcdef";

fn config() -> Config {
    Config {
        cases: CASES,
        // Failures are reported by the assertion; no regression files
        // (the tests directory is not the place for them).
        failure_persistence: None,
        ..Config::default()
    }
}

// --- JSON bodies -------------------------------------------------------------

/// Field names the request types know, plus a few they do not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("email".to_owned()),
        Just("password".to_owned()),
        Just("access_token".to_owned()),
        Just("scope".to_owned()),
        "[a-z_]{0,8}",
        "\\PC{0,6}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        Just(Value::from("session")),
        Just(Value::from("all")),
        Just(Value::from("a@example.com")),
        "\\PC{0,24}".prop_map(Value::from),
    ]
}

/// Arbitrary JSON documents, weighted towards objects with the request
/// types' own field names.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Valid JSON that is not an object: must always be refused with 422.
fn non_object() -> impl Strategy<Value = Value> {
    prop_oneof![
        leaf(),
        // Arrays shaped like the request types' fields, in order: a struct
        // must not be decodable from a positional array.
        prop::collection::vec(leaf(), 0..4).prop_map(Value::Array),
        prop::collection::vec("\\PC{0,16}".prop_map(Value::from), 0..4).prop_map(Value::Array),
    ]
}

/// A body every request type would accept, but with bytes that are not
/// UTF-8 (so not JSON, RFC 8259 section 8.1) inside an unknown field's
/// string, key or nested value.
fn complete_body_with_bad_utf8() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(0x80u8..=0xff, 1..4),
        0usize..3,
        "[a-z]{1,6}",
    )
        .prop_map(|(bad, place, key)| {
            let mut body = br#"{"email": "a@example.com", "password": "correct horse", "#.to_vec();
            body.extend_from_slice(br#""access_token": "t", ""#);
            match place {
                0 => {
                    body.extend_from_slice(format!(r#"{key}": ""#).as_bytes());
                    body.extend_from_slice(&bad);
                    body.extend_from_slice(br#""}"#);
                }
                1 => {
                    body.extend_from_slice(&bad);
                    body.extend_from_slice(br#"": 1}"#);
                }
                _ => {
                    body.extend_from_slice(format!(r#"{key}": [{{""#).as_bytes());
                    body.extend_from_slice(&bad);
                    body.extend_from_slice(br#"": null}]}"#);
                }
            }
            body
        })
}

/// Bytes to decode: raw noise, serialized documents, and documents cut
/// short or with one byte changed.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        complete_body_with_bad_utf8(),
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (json_value(), any::<prop::sample::Index>()).prop_map(|(v, at)| {
            let mut bytes = serde_json::to_vec(&v).unwrap();
            let cut = at.index(bytes.len() + 1);
            bytes.truncate(cut);
            bytes
        }),
        (json_value(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, at, b)| {
            let mut bytes = serde_json::to_vec(&v).unwrap();
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            bytes
        }),
    ]
}

/// `bytes` for a failure message: as text where they are UTF-8.
fn shown(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!(
            "{:?} (not UTF-8: {bytes:?})",
            String::from_utf8_lossy(bytes)
        ),
    }
}

/// The object `bytes` holds, if they are a JSON object.
fn as_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// What every request type must satisfy: no panic (implicit), and `Ok`
/// only for a JSON object whose named fields are strings equal to what was
/// decoded.
fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    let object = as_object(bytes);
    match decode::<CredentialsBody>(bytes) {
        Ok(body) => {
            let object = object.as_ref().ok_or_else(|| {
                TestCaseError::fail(format!(
                    "CredentialsBody decoded from what is not a JSON object: {} -> {body:?}",
                    shown(bytes)
                ))
            })?;
            prop_assert_eq!(
                object.get("email").and_then(Value::as_str),
                Some(body.email.as_str())
            );
            prop_assert_eq!(
                object.get("password").and_then(Value::as_str),
                Some(body.password.as_str())
            );
        }
        Err(e) => check_error(&e)?,
    }
    match decode::<TokenBody>(bytes) {
        Ok(body) => {
            let object = object.as_ref().ok_or_else(|| {
                TestCaseError::fail(format!(
                    "TokenBody decoded from what is not a JSON object: {} -> {body:?}",
                    shown(bytes)
                ))
            })?;
            prop_assert_eq!(
                object.get("access_token").and_then(Value::as_str),
                Some(body.access_token.as_str())
            );
        }
        Err(e) => check_error(&e)?,
    }
    match decode::<RevokeBody>(bytes) {
        Ok(body) => {
            let object = object.as_ref().ok_or_else(|| {
                TestCaseError::fail(format!(
                    "RevokeBody decoded from what is not a JSON object: {} -> {body:?}",
                    shown(bytes)
                ))
            })?;
            prop_assert_eq!(
                object.get("access_token").and_then(Value::as_str),
                Some(body.access_token.as_str())
            );
            let expected = match object.get("scope") {
                None => "session",
                Some(Value::String(s)) if s == "session" || s == "others" || s == "all" => {
                    s.as_str()
                }
                Some(other) => {
                    return Err(TestCaseError::fail(format!("scope {other} was accepted")));
                }
            };
            let decoded = match body.scope {
                RevokeScopeField::Session => "session",
                RevokeScopeField::Others => "others",
                RevokeScopeField::All => "all",
            };
            prop_assert_eq!(decoded, expected);
        }
        Err(e) => check_error(&e)?,
    }
    Ok(())
}

/// A decoding failure is a 400 or a 422 with the right code, never more.
fn check_error(e: &ApiError) -> Result<(), TestCaseError> {
    let status = e.status().as_u16();
    prop_assert!(
        (status == 400 && e.code() == "malformed_json")
            || (status == 422 && e.code() == "invalid_request"),
        "decode failed with {} {}: {}",
        status,
        e.code(),
        e
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decode_never_panics_and_accepts_only_objects(bytes in body_bytes()) {
        check_decode(&bytes)?;
    }

    #[test]
    fn decode_refuses_valid_json_that_is_not_an_object(value in non_object()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        for (name, result) in [
            ("CredentialsBody", decode::<CredentialsBody>(&bytes).map(|_| ())),
            ("TokenBody", decode::<TokenBody>(&bytes).map(|_| ())),
            ("RevokeBody", decode::<RevokeBody>(&bytes).map(|_| ())),
        ] {
            match result {
                Ok(()) => prop_assert!(false, "{} decoded from the non-object {}", name, value),
                // Well-formed JSON of the wrong shape: 422, not 400.
                Err(e) => prop_assert_eq!(
                    e.code(),
                    "invalid_request",
                    "{} on {}: {}",
                    name,
                    value,
                    e
                ),
            }
        }
    }

    #[test]
    fn decode_of_well_formed_objects(
        email in "\\PC{0,40}",
        password in "\\PC{0,40}",
        token in "\\PC{0,40}",
        extra in json_value(),
    ) {
        let body = serde_json::json!({
            "email": email, "password": password, "access_token": token, "unknown": extra,
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let credentials =
            decode::<CredentialsBody>(&bytes).expect("a well-formed credentials object decodes");
        prop_assert_eq!(credentials.email, email);
        prop_assert_eq!(credentials.password, password);
        let revoke = decode::<RevokeBody>(&bytes).expect("a well-formed revoke object decodes");
        prop_assert_eq!(&revoke.access_token, &token);
        prop_assert!(matches!(revoke.scope, RevokeScopeField::Session));
        check_decode(&bytes)?;
    }
}

// --- e-mail and password -----------------------------------------------------

/// Strings that look like addresses, with upper case, punctuation and a few
/// characters whose lower case has another length (İ: 2 bytes, i̇: 3 bytes;
/// K (Kelvin): 3 bytes, k: 1 byte).
fn address_like() -> impl Strategy<Value = String> {
    let local = "[A-Za-z0-9._%+'!#$&*=?^`{|}~İKÄé-]{1,70}";
    let domain = "[A-Za-z0-9İKé-]{1,20}(\\.[A-Za-z0-9-]{1,12}){0,3}";
    prop_oneof![
        (local, domain).prop_map(|(l, d)| format!("{l}@{d}")),
        // Near the 254-byte limit.
        (1usize..130, "[a-zA-ZİK]{1,4}")
            .prop_map(|(n, tail)| format!("{}{tail}@example.com", "İ".repeat(n))),
        (200usize..260).prop_map(|n| format!("{}@example.com", "A".repeat(n))),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn email_parse_never_panics(raw in "\\PC{0,300}") {
        check_email(&raw)?;
    }

    #[test]
    fn email_parse_on_arbitrary_strings(raw in any::<String>()) {
        check_email(&raw)?;
    }

    #[test]
    fn email_parse_on_address_like_strings(raw in address_like()) {
        check_email(&raw)?;
    }

    #[test]
    fn password_parse_follows_the_length_rules(raw in prop_oneof![
        any::<String>(),
        "\\PC{0,12}",
        prop::collection::vec(any::<char>(), 250..300).prop_map(String::from_iter),
        (1000usize..1100).prop_map(|n| "x".repeat(n)),
        (0usize..12, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
    ]) {
        let expected_ok = raw.len() <= 1024 && raw.chars().count() >= 8;
        let result = Password::parse(raw.clone());
        prop_assert_eq!(
            result.is_ok(),
            expected_ok,
            "{:?} ({} bytes, {} chars)",
            raw,
            raw.len(),
            raw.chars().count()
        );
        if let Ok(password) = result {
            prop_assert_eq!(password.expose(), raw.as_bytes());
            prop_assert_eq!(format!("{password:?}"), "Password(***)");
        }
    }
}

/// `Email::parse`: no panic; when it accepts, the result is lower-case,
/// within the length limit, and parses again to itself (idempotent).
fn check_email(raw: &str) -> Result<(), TestCaseError> {
    let Ok(email) = Email::parse(raw) else {
        return Ok(());
    };
    let normalised = email.as_str();
    prop_assert_eq!(normalised, raw.to_lowercase());
    prop_assert_eq!(normalised.to_lowercase(), normalised, "not lower-case");
    prop_assert!(
        normalised.len() <= 254,
        "{} bytes: {:?}",
        normalised.len(),
        normalised
    );
    match Email::parse(normalised) {
        Ok(again) => prop_assert_eq!(again, email, "not idempotent"),
        Err(e) => prop_assert!(
            false,
            "{:?} was accepted as {:?}, which is then refused ({})",
            raw,
            normalised,
            e
        ),
    }
    Ok(())
}

// --- token verification ------------------------------------------------------

fn codec() -> TokenCodec {
    TokenCodec::new(
        &SigningKeys::Hs256 {
            secret: SECRET.to_vec(),
        },
        "authd",
        "authd",
        900,
    )
    .expect("an HS256 codec")
}

/// A valid, unexpired token of a fresh session.
fn valid_token(codec: &TokenCodec) -> String {
    let session = Session::start(UserId::new_random(), 0, now_ms(), 3_600_000);
    let token = codec.sign(&codec.claims_for(&session)).expect("signing");
    assert!(codec.verify(&token).is_ok(), "the unmutated token verifies");
    token
}

/// Characters a mutation may put into a token: its own alphabet, the
/// separator, and some that do not belong there.
const MUTATION_CHARS: &[char] = &[
    'A',
    'B',
    'Z',
    'a',
    'b',
    'z',
    '0',
    '1',
    '9',
    '-',
    '_',
    '.',
    '=',
    '+',
    '/',
    ' ',
    '%',
    '\0',
    'é',
    '\u{1F600}',
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the character at this position.
    Replace(prop::sample::Index, char),
    /// Flip one bit of the byte at this position (kept only if the result is
    /// still UTF-8, else the byte is replaced by '~').
    FlipBit(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, char),
    Delete(prop::sample::Index),
    /// Reorder or repeat the three segments.
    Segments([usize; 3]),
    /// Drop a segment.
    DropSegment(usize),
    /// Append an extra segment.
    ExtraSegment(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let ch = prop::sample::select(MUTATION_CHARS);
    prop_oneof![
        (any::<prop::sample::Index>(), ch.clone()).prop_map(|(i, c)| Mutation::Replace(i, c)),
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), ch).prop_map(|(i, c)| Mutation::Insert(i, c)),
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
        [0usize..3, 0usize..3, 0usize..3].prop_map(Mutation::Segments),
        (0usize..3).prop_map(Mutation::DropSegment),
        "[A-Za-z0-9_-]{0,12}".prop_map(Mutation::ExtraSegment),
    ]
}

fn mutate(token: &str, m: &Mutation) -> String {
    if token.is_empty() {
        // Only insertions and extra segments apply to nothing.
        return match m {
            Mutation::Insert(_, c) => c.to_string(),
            Mutation::ExtraSegment(extra) => format!(".{extra}"),
            _ => String::new(),
        };
    }
    let chars: Vec<char> = token.chars().collect();
    let segments: Vec<&str> = token.split('.').collect();
    match m {
        Mutation::Replace(i, c) => {
            let mut chars = chars;
            let i = i.index(chars.len());
            chars[i] = *c;
            chars.into_iter().collect()
        }
        Mutation::FlipBit(i, bit) => {
            let mut bytes = token.as_bytes().to_vec();
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
            // A flip inside a character an earlier mutation inserted can
            // leave invalid UTF-8: the replacement character keeps the
            // token garbled, which is the point.
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Mutation::Truncate(i) => chars[..i.index(chars.len())].iter().collect(),
        Mutation::Insert(i, c) => {
            let mut chars = chars;
            let i = i.index(chars.len() + 1);
            chars.insert(i, *c);
            chars.into_iter().collect()
        }
        Mutation::Delete(i) => {
            let mut chars = chars;
            let i = i.index(chars.len());
            chars.remove(i);
            chars.into_iter().collect()
        }
        Mutation::Segments(order) => order
            .iter()
            .filter_map(|&i| segments.get(i).copied())
            .collect::<Vec<_>>()
            .join("."),
        Mutation::DropSegment(i) => {
            let mut segments = segments;
            if *i < segments.len() {
                segments.remove(*i);
            }
            segments.join(".")
        }
        Mutation::ExtraSegment(extra) => format!("{token}.{extra}"),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn verify_refuses_arbitrary_strings(raw in prop_oneof![
        any::<String>(),
        "\\PC{0,64}",
        // Three base64url-ish segments: shaped like a JWT.
        "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,60}",
        "eyJ[A-Za-z0-9_-]{0,60}\\.eyJ[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,60}",
        (4000usize..5000).prop_map(|n| "a.".repeat(n)),
    ]) {
        let codec = codec();
        prop_assert!(codec.verify(&raw).is_err(), "{:?} verified", raw);
        prop_assert!(
            codec.verify_allow_expired(&raw).is_err(),
            "{:?} verified (expired allowed)",
            raw
        );
    }

    #[test]
    fn verify_never_accepts_a_mutated_token(mutations in prop::collection::vec(mutation(), 1..4)) {
        let codec = codec();
        let token = valid_token(&codec);
        let mut mutated = token.clone();
        for m in &mutations {
            mutated = mutate(&mutated, m);
        }
        // A mutation that happens to give back the same string (e.g. the
        // identity permutation of the segments) proves nothing.
        prop_assume!(mutated != token);
        prop_assert!(codec.verify(&mutated).is_err(), "{:?} -> {:?} verified", mutations, mutated);
        prop_assert!(
            codec.verify_allow_expired(&mutated).is_err(),
            "{:?} -> {:?} verified (expired allowed)",
            mutations,
            mutated
        );
    }

    #[test]
    fn verify_refuses_tokens_of_another_key(secret in prop::collection::vec(any::<u8>(), 1..64)) {
        prop_assume!(secret != SECRET);
        let other = TokenCodec::new(&SigningKeys::Hs256 { secret }, "authd", "authd", 900).unwrap();
        let token = valid_token(&other);
        let codec = codec();
        prop_assert!(codec.verify(&token).is_err());
        prop_assert!(codec.verify_allow_expired(&token).is_err());
    }
}
