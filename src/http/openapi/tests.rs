//! The generated document against the route table, and its own
//! consistency: every row and alias is an operation, every operation a
//! row, operation ids are unique, and every `$ref` resolves.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;

fn parsed() -> Value {
    serde_json::from_slice(&document()).expect("the document is JSON")
}

/// Every (method, path) the route table serves, aliases included.
fn table() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .flat_map(|row| {
            std::iter::once((&row.method, row.path)).chain(row.aliases.iter().map(|(m, p)| (m, *p)))
        })
        .map(|(method, path)| (method.as_str().to_ascii_lowercase(), path.to_owned()))
        .collect()
}

#[test]
fn every_row_is_documented_and_nothing_else() {
    let doc = parsed();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    assert_eq!(documented, table());
}

#[test]
fn is_an_openapi_3_document() {
    let doc = parsed();
    // An OpenAPI 3.1 parser other than the generator reads it, and finds
    // every operation.
    let text = String::from_utf8(document().to_vec()).expect("UTF-8");
    let spec = oas3::from_json(text).expect("an OpenAPI 3 document");
    let version = spec
        .validate_version()
        .expect("a supported OpenAPI version");
    assert_eq!(version.major, 3);
    assert_eq!(spec.operations().count(), table().len());
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("path item").values() {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            assert!(operation["responses"]["431"].is_object(), "{id}: 431");
        }
    }
    for id in [
        "legacySignUp",
        "legacySignIn",
        "legacyRefresh",
        "legacyRevoke",
        "legacyHealth",
    ] {
        assert!(ids.contains(id), "{id}");
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference.strip_prefix('#').expect("a local $ref");
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {reference}");
    }
}

#[test]
fn keeps_what_clients_and_schemathesis_rely_on() {
    let doc = parsed();
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    for (path, method) in [
        ("/sessions", "get"),
        ("/password", "post"),
        ("/account", "delete"),
    ] {
        assert_eq!(
            op(path, method)["security"][0]["bearerAuth"],
            Value::Array(vec![])
        );
    }
    let cursor = op("/sessions", "get")["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "cursor")
        .cloned()
        .expect("cursor");
    assert_eq!(cursor["schema"]["pattern"], "^[A-Za-z0-9_-]{1,128}$");
    let signup = op("/signup", "post");
    for status in ["201", "400", "409", "413", "415", "422", "429", "503"] {
        assert!(signup["responses"][status].is_object(), "signup {status}");
    }
    assert_eq!(
        signup["responses"]["201"]["links"]["Refresh"]["operationId"],
        "refresh"
    );
    assert!(op("/sessions/{id}", "delete")["responses"]["404"].is_object());
    assert!(op("/auth/refresh", "put")["responses"]["401"].is_object());
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                refs.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}
