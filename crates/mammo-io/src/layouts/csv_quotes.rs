//! Finding an unterminated quote in a CSV table before it is parsed.
//!
//! The `csv` crate does not report one: a stray `"` at the start of a field swallows the rest of the
//! file into that field, and the user is told about whatever column comes out empty ("bad label ''"),
//! far from the cause. This follows the same quoting rules (RFC 4180, as the `csv` crate reads them:
//! a quote opens a quoted field only at the field's start; `""` inside is a quote; after the closing
//! quote the field goes on literally) and reports the line where the unterminated quote opened.

/// `None` when every quoted field is closed, else the 1-based line on which the unterminated one opened.
pub(crate) fn unterminated_quote_line(bytes: &[u8], delimiter: u8) -> Option<usize> {
    #[derive(Clone, Copy)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let (mut state, mut line, mut opened) = (State::FieldStart, 1, 0);
    for &b in bytes {
        state = match (state, b) {
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) => State::Quoted,
            (State::FieldStart, b'"') => {
                opened = line;
                State::Quoted
            }
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (_, b'\n') => State::FieldStart,
            (_, d) if d == delimiter => State::FieldStart,
            _ => State::Unquoted,
        };
        if b == b'\n' {
            line += 1;
        }
    }
    matches!(state, State::Quoted).then_some(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_of_an_unterminated_quote_is_found_and_closed_quotes_pass() {
        let ok = b"image,label\n\"a,b.png\",benign\n\"say \"\"hi\"\"\",1\nx\"y.png,0\r\n\"multi\nline\",2\n";
        assert_eq!(unterminated_quote_line(ok, b','), None);
        let bad = b"image,label\na.png,benign\n\"b.png,malignant\nc.png,normal\n";
        assert_eq!(unterminated_quote_line(bad, b','), Some(3));
        // A quote in the middle of a field is literal, as the csv crate reads it.
        assert_eq!(unterminated_quote_line(b"a,5\" mass,b\n", b','), None);
        assert_eq!(unterminated_quote_line(b"a;\"b;c\n", b';'), Some(1));
    }
}
