//! What SageMaker's `InvokeEndpoint` lets through, and how serving parameters travel in it.
//!
//! `InvokeEndpoint` forwards the body, `Content-Type`, `Accept` and its `CustomAttributes` parameter (as
//! the request header `X-Amzn-SageMaker-Custom-Attributes`) to the container, and nothing else: no
//! query string (so `?spacing_mm=` never arrives), no `Authorization` header. On the way back it
//! returns the body, its `Content-Type` and the container's `X-Amzn-SageMaker-Custom-Attributes`
//! response header (as the response's `CustomAttributes`), and drops every other header (so
//! `X-Mammogan-Score` is lost).
//!
//! So, for callers behind SageMaker:
//! - request parameters are `key=value` pairs in the custom attributes, separated by `;` (or `,`), e.g.
//!   `--custom-attributes 'spacing_mm=0.07'`. Every key must be one of [`KEYS`]: an unknown or misspelt
//!   key is a 400 naming it, never silently ignored (a lost spacing silently means 0.1 mm). Entries
//!   without `=` are passed over: AWS suggests the attributes for opaque values such as trace IDs
//!   (`Trace ID: ...`), which are no parameter and no typo of one;
//! - every successful answer carries `score=S` in the response's custom attributes, JSON or PNG, so
//!   `Accept: image/png` (the overlay as the body) still gives the caller the score.
//!
//! The same header works outside SageMaker, beside the query string; giving the same parameter both
//! ways is a 400 (which one counts would be a guess).

use axum::http::{HeaderMap, HeaderValue};

use crate::server::SPACING_RANGE_MM;

/// The header `InvokeEndpoint`'s `CustomAttributes` arrives in, and the response header it returns.
pub const HEADER: &str = "x-amzn-sagemaker-custom-attributes";

/// The keys a request's custom attributes may hold.
pub const KEYS: &[&str] = &["spacing_mm"];

/// Serving parameters from the custom attributes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes {
    /// The pixel spacing of an image that carries none, in mm (as `?spacing_mm=`).
    pub spacing_mm: Option<f64>,
}

/// Parses the attributes header's value. Errors are one line naming the header and the pair.
pub fn parse(value: &str) -> Result<Attributes, String> {
    let mut out = Attributes::default();
    for pair in value.split([';', ',']).map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, v)) = pair.split_once('=') else { continue };
        let (key, v) = (key.trim(), v.trim());
        match key {
            "spacing_mm" => {
                if out.spacing_mm.is_some() {
                    return Err("X-Amzn-SageMaker-Custom-Attributes: spacing_mm given twice".into());
                }
                let (lo, hi) = (SPACING_RANGE_MM.start(), SPACING_RANGE_MM.end());
                let s = v.parse::<f64>().ok().filter(|s| SPACING_RANGE_MM.contains(s)).ok_or_else(|| {
                    format!("X-Amzn-SageMaker-Custom-Attributes: spacing_mm={v}: must be a pixel spacing from {lo} to {hi} mm")
                })?;
                out.spacing_mm = Some(s);
            }
            _ => {
                return Err(format!(
                    "X-Amzn-SageMaker-Custom-Attributes: unknown key {key:?} (known: {})",
                    KEYS.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

/// The spacing a request gives: `?spacing_mm=` (already parsed, `from_query`) or the custom
/// attributes, not both.
pub fn request_spacing(headers: &HeaderMap, from_query: Option<f64>) -> Result<Option<f64>, String> {
    let Some(raw) = headers.get(HEADER) else { return Ok(from_query) };
    let value = raw.to_str().map_err(|_| "X-Amzn-SageMaker-Custom-Attributes: not visible ASCII".to_string())?;
    let attrs = parse(value)?;
    match (from_query, attrs.spacing_mm) {
        (Some(_), Some(_)) => {
            Err("spacing_mm given both as ?spacing_mm= and in X-Amzn-SageMaker-Custom-Attributes: give one".into())
        }
        (q, a) => Ok(q.or(a)),
    }
}

/// Puts `score=S` into the answer's custom attributes, the one header `InvokeEndpoint` returns.
pub fn add_score(headers: &mut HeaderMap, score: f64) {
    if let Ok(v) = HeaderValue::from_str(&format!("score={score:.6}")) {
        headers.insert(HEADER, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn spacing_from_the_attributes() {
        assert_eq!(parse("spacing_mm=0.07"), Ok(Attributes { spacing_mm: Some(0.07) }));
        assert_eq!(parse(" spacing_mm = 0.07 ;"), Ok(Attributes { spacing_mm: Some(0.07) }));
        assert_eq!(parse(""), Ok(Attributes::default()));
        // Opaque values (a trace ID) beside the parameters are passed over.
        assert_eq!(parse("Trace ID: 1-5f84c7a5; spacing_mm=0.05"), Ok(Attributes { spacing_mm: Some(0.05) }));
        assert_eq!(request_spacing(&with("spacing_mm=0.2"), None), Ok(Some(0.2)));
        assert_eq!(request_spacing(&HeaderMap::new(), Some(0.3)), Ok(Some(0.3)));
        assert_eq!(request_spacing(&HeaderMap::new(), None), Ok(None));
        // Header names are case-insensitive: SageMaker's capitalisation arrives as the same header.
        let mut h = HeaderMap::new();
        h.insert("X-Amzn-SageMaker-Custom-Attributes", HeaderValue::from_static("spacing_mm=0.1"));
        assert_eq!(request_spacing(&h, None), Ok(Some(0.1)));
    }

    #[test]
    fn bad_attributes_are_refused_naming_the_header() {
        for (v, why) in [
            ("spacing=0.07", "unknown key \"spacing\" (known: spacing_mm)"),
            ("spacing_mm=5", "spacing_mm=5: must be a pixel spacing from 0.01 to 1 mm"),
            ("spacing_mm=NaN", "spacing_mm=NaN: must be a pixel spacing"),
            ("spacing_mm=0.07;spacing_mm=0.1", "spacing_mm given twice"),
        ] {
            let e = parse(v).unwrap_err();
            assert!(e.starts_with("X-Amzn-SageMaker-Custom-Attributes: ") && e.contains(why), "{v}: {e}");
        }
        let e = request_spacing(&with("spacing_mm=0.2"), Some(0.2)).unwrap_err();
        assert!(e.contains("give one"), "{e}");
    }

    #[test]
    fn the_score_goes_into_the_response_attributes() {
        let mut h = HeaderMap::new();
        add_score(&mut h, 0.25);
        assert_eq!(h.get("X-Amzn-SageMaker-Custom-Attributes").unwrap(), "score=0.250000");
    }
}
