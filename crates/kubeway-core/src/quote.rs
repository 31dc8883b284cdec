//! User input quoted for error messages: as Rust's `{:?}` quotes it (escapes included), but cut
//! to [`MAX_CHARS`] characters, saying how long it really was, so that a hostile or mistaken
//! 100,000-character argument does not flood the terminal.

/// How many characters of an input an error message quotes at most.
pub const MAX_CHARS: usize = 200;

/// `s` quoted (`"web"`), cut after [`MAX_CHARS`] characters (`"aaaa…" (100000 characters)`).
pub fn quote(s: &str) -> String {
    let count = s.chars().count();
    if count <= MAX_CHARS {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(MAX_CHARS).collect();
    let quoted = format!("{head:?}");
    let open = quoted.strip_suffix('"').unwrap_or(&quoted);
    format!("{open}…\" ({count} characters)")
}

/// `s` as it is, cut after [`MAX_CHARS`] characters (`9999…(100000 characters)`): for inputs
/// shown unquoted, such as numbers.
pub fn cut(s: &str) -> String {
    let count = s.chars().count();
    if count <= MAX_CHARS {
        return s.to_string();
    }
    let head: String = s.chars().take(MAX_CHARS).collect();
    format!("{head}… ({count} characters)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_as_debug_and_long_input_is_cut() {
        assert_eq!(quote("svc/web"), "\"svc/web\"");
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
        let long = "x".repeat(100_000);
        let q = quote(&long);
        assert!(q.len() < MAX_CHARS + 40, "{}", q.len());
        assert!(q.ends_with("…\" (100000 characters)"), "{q}");
        assert!(q.starts_with("\"xxx"));
        assert_eq!(cut("8080"), "8080");
        assert!(cut(&long).ends_with("… (100000 characters)"));
        let wide = "é".repeat(300);
        assert!(quote(&wide).contains("(300 characters)"));
    }
}
