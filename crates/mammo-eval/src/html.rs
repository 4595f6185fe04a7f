//! Text helpers for the report: HTML escaping, base64 data URIs and number formatting.

/// Escapes text for HTML element content and quoted attribute values (`&`, `<`, `>`, `"`, `'`).
///
/// Every string that reaches the report from outside (titles, series names, patch ids, captions) goes
/// through here, so a name like `<script>` shows as text and cannot change the page.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding). Twenty lines here spare the crate a dependency.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..4 {
            // A chunk of len bytes fills len + 1 sextets; the rest is padding.
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A `data:` URI for PNG bytes, for an `<img src=...>` that needs no file next to the page.
pub fn png_data_uri(png: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64(png))
}

/// A metric value with 3 decimals, or an em dash where it is undefined (NaN or infinite), so an empty
/// cell never reads as a measured number.
pub fn fmt3(v: f64) -> String {
    if v.is_finite() { format!("{v:.3}") } else { "—".to_string() }
}

/// An axis tick label for `v` on an axis with tick spacing `step`: just enough decimals to tell
/// neighbouring ticks apart, and a `k`/`M` suffix for large round numbers (training steps).
pub fn fmt_tick(v: f64, step: f64) -> String {
    // Snap values within rounding error of zero, so the axis never reads "-0.0".
    let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
    let (scaled, scaled_step, suffix) = if step >= 1e6 && v.abs() >= 1e6 {
        (v / 1e6, step / 1e6, "M")
    } else if step >= 1e3 && v.abs() >= 1e3 {
        (v / 1e3, step / 1e3, "k")
    } else {
        (v, step, "")
    };
    // The fewest decimals that write the step exactly (0.25 needs 2, 2.5 needs 1), capped at 6.
    let decimals = (0..6)
        .find(|&d| {
            let x = scaled_step * 10f64.powi(d);
            (x - x.round()).abs() < 1e-6 * x.max(1.0)
        })
        .unwrap_or(6) as usize;
    format!("{scaled:.decimals$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(escape("P(malignant) 0.93 → 0.12"), "P(malignant) 0.93 → 0.12");
    }

    #[test]
    fn base64_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt3(0.83333), "0.833");
        assert_eq!(fmt3(f64::NAN), "—");
        assert_eq!(fmt_tick(0.25, 0.05), "0.25");
        assert_eq!(fmt_tick(0.2, 0.2), "0.2");
        assert_eq!(fmt_tick(3.0, 1.0), "3");
        assert_eq!(fmt_tick(2000.0, 500.0), "2000");
        assert_eq!(fmt_tick(20000.0, 5000.0), "20k");
        assert_eq!(fmt_tick(2500.0, 500.0), "2500");
        assert_eq!(fmt_tick(12500.0, 2500.0), "12.5k");
        assert_eq!(fmt_tick(-1e-17, 0.1), "0.0");
        assert_eq!(fmt_tick(3_000_000.0, 1_000_000.0), "3M");
    }
}
