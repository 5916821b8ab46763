//! Real `mab plan --format json` output validates against `schemas/plan.schema.json`.

use crate::support::{manifests, ok, root};

pub(crate) fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schemas/plan.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the schema itself is valid")
}

pub(crate) fn assert_valid(v: &jsonschema::Validator, json: &str, what: &str) {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let errors: Vec<String> = v
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn plans_match_the_schema() {
    let v = validator();
    for (name, file) in manifests() {
        assert_valid(&v, &ok(&["-f", file, "plan", "--format", "json"]), name);
    }
    for profile in ["prod", "local"] {
        assert_valid(
            &v,
            &ok(&["--profile", profile, "plan", "--format", "json"]),
            profile,
        );
    }
    assert_valid(
        &v,
        &ok(&[
            "plan",
            "odb",
            "--platform",
            "linux/arm64",
            "--format",
            "json",
        ]),
        "selection",
    );
}

#[test]
fn the_schema_rejects_what_it_should() {
    let v = validator();
    let good: serde_json::Value =
        serde_json::from_str(&ok(&["plan", "runtime:3.15", "--format", "json"])).unwrap();
    let mut bad = good.clone();
    bad["nodes"][0]["kind"] = "compile".into();
    assert!(!v.is_valid(&bad), "an unknown kind must not validate");
    let mut bad = good.clone();
    bad["nodes"][1]["id"] = "build:runtime".into();
    assert!(!v.is_valid(&bad), "a malformed id must not validate");
    let mut bad = good;
    bad["schema"] = 2.into();
    assert!(
        !v.is_valid(&bad),
        "another schema version must not validate"
    );
}
