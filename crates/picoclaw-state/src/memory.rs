//! The `MemoryStore` trait: a full-text index over long-term memory notes.
//!
//! The notes themselves live in the workspace as Markdown (see [`crate::WorkspaceMemory`]);
//! the store only indexes them, by source file, so it can always be rebuilt from the files.

/// At most this many words of a query are searched for.
pub(crate) const MAX_QUERY_TERMS: usize = 24;

/// The words of a query: lower-cased runs of letters and digits, without duplicates, in order.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let word = word.to_lowercase();
        if !terms.contains(&word) {
            terms.push(word);
            if terms.len() == MAX_QUERY_TERMS {
                break;
            }
        }
    }
    terms
}

/// Scores a note against query terms the simple way (the in-memory backend): distinct terms
/// that occur as words, plus a little for repeats, scaled down for long notes.
pub(crate) fn simple_score(terms: &[String], text: &str) -> f64 {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return 0.0;
    }
    let mut distinct = 0.0;
    let mut repeats = 0.0;
    for term in terms {
        let n = words.iter().filter(|w| *w == term).count();
        if n > 0 {
            distinct += 1.0;
            repeats += (n - 1) as f64;
        }
    }
    if distinct == 0.0 {
        return 0.0;
    }
    let length_penalty = 1.0 + (words.len() as f64 / 50.0);
    distinct + (0.1 * repeats) / length_penalty - 0.01 * length_penalty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_terms_are_words_only() {
        assert_eq!(
            query_terms("What's my \"wife's\" BIRTHDAY? -- AND/OR *"),
            ["what", "s", "my", "wife", "birthday", "and", "or"]
        );
        assert!(query_terms("  ?!* ").is_empty());
        assert_eq!(query_terms("tea tea TEA"), ["tea"]);
        assert_eq!(query_terms("生日 café"), ["生日", "café"]);
    }

    #[test]
    fn simple_score_prefers_more_terms() {
        let terms = query_terms("green tea");
        let both = simple_score(&terms, "The user likes green tea");
        let one = simple_score(&terms, "The user likes tea");
        let none = simple_score(&terms, "The user likes coffee");
        assert!(both > one && one > none, "{both} {one} {none}");
        assert_eq!(none, 0.0);
    }
}
