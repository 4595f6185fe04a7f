//! Which tracking server, and how to authenticate to it, without ever showing a credential.
//!
//! The URI is `http://HOST[:PORT][/PREFIX]` or `https://...`; credentials come from
//! `MLFLOW_TRACKING_TOKEN` (bearer), `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`, or the
//! URI's `user:password@` (basic), as MLflow's own client takes them. They go into a header only: the
//! URL we request, every message and `RUN/mlflow.json` carry [`Target::shown`], the URI without them.

/// A tracking server to send to.
#[derive(Clone)]
pub struct Target {
    /// `scheme://host[:port][/prefix]`, no credentials, no trailing slash: what requests go to.
    base: String,
    /// The `Authorization` header's value, if any.
    auth: Option<String>,
    /// The experiment runs go into.
    pub experiment: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credential, even in a debug print.
        f.debug_struct("Target").field("base", &self.base).field("experiment", &self.experiment).finish()
    }
}

/// The experiment when none is named (`--mlflow-experiment`, `MLFLOW_EXPERIMENT_NAME`).
pub const DEFAULT_EXPERIMENT: &str = "mammogan";

impl Target {
    /// Parses `uri`; `env` looks up the credential variables (`std::env::var` in use, a map in tests).
    /// The error is one line and never repeats a credential.
    pub fn parse(uri: &str, experiment: &str, env: impl Fn(&str) -> Option<String>) -> Result<Target, String> {
        let (scheme, rest) = uri
            .split_once("://")
            .filter(|(s, _)| matches!(s.to_ascii_lowercase().as_str(), "http" | "https"))
            .ok_or_else(|| {
                format!("MLflow tracking URI {}: only http:// and https:// tracking servers are supported", redact(uri))
            })?;
        if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("MLflow tracking URI {}: no query, fragment or spaces expected", redact(uri)));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(format!("MLflow tracking URI {}: no host", redact(uri)));
        }
        if experiment.is_empty() {
            return Err("MLflow experiment name: empty".to_string());
        }
        let base = format!("{}://{host}{}", scheme.to_ascii_lowercase(), path.trim_end_matches('/'));
        let auth = if let Some(token) = env("MLFLOW_TRACKING_TOKEN").filter(|t| !t.is_empty()) {
            Some(format!("Bearer {token}"))
        } else if let (Some(u), Some(p)) = (env("MLFLOW_TRACKING_USERNAME"), env("MLFLOW_TRACKING_PASSWORD")) {
            Some(format!("Basic {}", base64(format!("{u}:{p}").as_bytes())))
        } else {
            userinfo.map(|u| format!("Basic {}", base64(percent_decode(u).as_slice())))
        };
        Ok(Target { base, auth, experiment: experiment.to_string() })
    }

    /// The URI as it may be shown and recorded: no credentials.
    pub fn shown(&self) -> &str {
        &self.base
    }

    /// The full URL of an API path (`api/2.0/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// The `Authorization` header's value.
    pub(crate) fn authorization(&self) -> Option<&str> {
        self.auth.as_deref()
    }
}

/// `uri` with any `user:password@` removed, for messages about a URI that did not parse.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.split('@').next_back().unwrap_or_default().to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => uri.to_string(),
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Standard base64 with padding (RFC 4648), for a basic-auth header.
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn credentials_go_to_the_header_only() {
        let t = Target::parse("http://alice:s%40cret@127.0.0.1:5000/mlflow/", "e", none).unwrap();
        assert_eq!(t.shown(), "http://127.0.0.1:5000/mlflow");
        assert_eq!(t.url("api/2.0/mlflow/runs/create"), "http://127.0.0.1:5000/mlflow/api/2.0/mlflow/runs/create");
        assert_eq!(t.authorization(), Some(format!("Basic {}", base64(b"alice:s@cret")).as_str()));
        assert!(!format!("{t:?}").contains("cret"));
    }

    #[test]
    fn the_token_variable_wins() {
        let env = |k: &str| (k == "MLFLOW_TRACKING_TOKEN").then(|| "tok".to_string());
        let t = Target::parse("https://mlflow.example.org", "e", env).unwrap();
        assert_eq!(t.authorization(), Some("Bearer tok"));
        assert_eq!(t.shown(), "https://mlflow.example.org");
        let t = Target::parse("http://h:1", "e", none).unwrap();
        assert_eq!(t.authorization(), None);
    }

    #[test]
    fn unsupported_uris_are_refused_without_their_credentials() {
        for bad in ["file:///tmp/mlruns", "databricks", "sqlite:///m.db", "http://", "http://h/?x=1"] {
            assert!(Target::parse(bad, "e", none).is_err(), "{bad}");
        }
        let e = Target::parse("ftp://bob:pw@h/x", "e", none).unwrap_err();
        assert!(!e.contains("pw") && e.contains("ftp://h/x"), "{e}");
        assert!(Target::parse("http://h", "", none).is_err());
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
