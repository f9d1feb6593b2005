//! Words of plain text, where more than one part of the program cuts a text short.

/// Small words a text cut short must not end on (`... reconstructed DNA and`).
const DANGLING_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "of", "to", "for", "with", "in", "on", "at", "by",
    "from", "as", "into", "than", "that", "which", "who", "their", "its", "our", "your", "is",
    "are", "be",
];

/// Drop from the end of `words` (a text cut short) the small words it must not end on, and
/// words of punctuation only, keeping at least `keep` words.
pub fn drop_dangling_end(words: &mut Vec<&str>, keep: usize) {
    while words.len() > keep
        && let Some(last) = words.last()
    {
        let bare = last.trim_end_matches(|character: char| !character.is_alphanumeric());
        if !bare.is_empty() && !DANGLING_WORDS.contains(&bare.to_lowercase().as_str()) {
            break;
        }
        words.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_words_and_punctuation_go_from_the_end_only() {
        let mut words = vec!["Care", "for", "pets", "and", "the", "-"];
        drop_dangling_end(&mut words, 0);
        assert_eq!(words, ["Care", "for", "pets"]);
        let mut words = vec!["Of", "the", "and"];
        drop_dangling_end(&mut words, 2);
        assert_eq!(words, ["Of", "the"]);
    }
}
