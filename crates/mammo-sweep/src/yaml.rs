//! A JSON value written as block-style YAML, for manifests people read (`kubectl` takes either, and
//! no YAML crate is in the lock file). Every string is written as a JSON string, which is also a YAML
//! double-quoted scalar: nothing can be read back as another type (`"no"`, `"1.10"`, `"0755"`).

use serde_json::Value;

/// `value` (an object at the top) as a YAML document.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    block(value, 0, &mut out);
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) if m.is_empty() => Some("{}".into()),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(_) | Value::Array(_) => None,
        // Null, booleans, numbers and strings read the same in JSON and YAML.
        other => Some(other.to_string()),
    }
}

fn key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
    if plain { k.to_string() } else { Value::String(k.to_string()).to_string() }
}

fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, item) in m {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}{}: {s}\n", key(k))),
                    None => {
                        out.push_str(&format!("{pad}{}:\n", key(k)));
                        block(item, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // The item's block one level in, its first line's indentation replaced by "- ".
                        let mut inner = String::new();
                        block(item, indent + 2, &mut inner);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&inner[indent + 2..]);
                    }
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other).unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_maps_lists_and_quoted_strings() {
        let v = serde_json::json!({
            "apiVersion": "batch/v1",
            "spec": {"n": 3, "list": ["a", {"x": 1, "y": [true]}, []], "empty": {}, "nvidia.com/gpu": "1"},
            "odd key": "no",
        });
        // serde_json's map is sorted (no preserve_order in the lock file), so the order is fixed.
        assert_eq!(
            to_yaml(&v),
            "apiVersion: \"batch/v1\"\n\"odd key\": \"no\"\nspec:\n  empty: {}\n  list:\n    - \"a\"\n    - x: 1\n      \
             y:\n        - true\n    - []\n  n: 3\n  nvidia.com/gpu: \"1\"\n"
        );
    }
}
