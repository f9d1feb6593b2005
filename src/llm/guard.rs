//! Watching an answer's texts as the embedded model writes them ([`TextGuard`]): as soon as an
//! item's text is closed, it is judged (a name the answer must not use, or one the answer gave
//! before; any text the request's [`TextCheck`] refuses: the junk rules). A refused text is
//! taken back: the caller rolls the grammar and the KV cache back to where the text began, and
//! the model begins it again without the first tokens it tried there. After a few tries the
//! text is let through, and the checks after the answer have the last word.
//!
//! The answer is compact JSON made by the grammar, `{"items":[{"name":"...",...},...]}`; the
//! guard reads it again from the start after each step ([`closed_texts`]), which costs
//! microseconds against the milliseconds of a token.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use llama_cpp_2::token::LlamaToken;

use super::TextCheck;
use crate::draft::name_key;

/// How often the model may begin one item's name again.
const NAME_RETRIES: usize = 8;

/// How often the model may begin any other text again (a description costs ten times the
/// tokens of a name).
const TEXT_RETRIES: usize = 4;

/// A string value of an answer's item, closed: where its text begins and ends in the answer's
/// bytes, its JSON pointer inside the item (`/name`, `/segmentation/0/value`) and the item's
/// name as far as it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedText {
    pub start: usize,
    pub end: usize,
    pub path: String,
    pub name: String,
}

/// Where the answer is, one level of nesting.
#[derive(Debug)]
enum Frame {
    /// An object, with the key of the value being read, as its bytes in the answer (None
    /// while a key is awaited).
    Object(Option<Range<usize>>),
    /// An array, with the index of the value being read.
    Array(usize),
}

/// The string values of items closed in `answer` at or after byte `from`. Keys, numbers and
/// values outside `/items/N` are not texts. Only what is returned is copied out of `answer`.
pub fn closed_texts(answer: &[u8], from: usize) -> Vec<ClosedText> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut closed = Vec::new();
    // The bytes of the current item's name, quotes included.
    let mut name: Option<Range<usize>> = None;
    let mut index = 0;
    while index < answer.len() {
        match answer[index] {
            b'"' => {
                let start = index + 1;
                let mut end = start;
                while end < answer.len() && answer[end] != b'"' {
                    end += if answer[end] == b'\\' { 2 } else { 1 };
                }
                if end >= answer.len() {
                    break; // still being written
                }
                match frames.last_mut() {
                    Some(Frame::Object(key @ None)) => *key = Some(start..end),
                    _ => {
                        let item = item_frames(answer, &frames);
                        if let [Frame::Object(Some(key))] = item
                            && &answer[key.clone()] == b"name"
                        {
                            name = Some(index..end + 1);
                        }
                        if end >= from && !item.is_empty() {
                            closed.push(ClosedText {
                                start,
                                end,
                                path: item_path(answer, item),
                                name: name
                                    .clone()
                                    .map(|name| json_text(&answer[name]))
                                    .unwrap_or_default(),
                            });
                        }
                    }
                }
                index = end;
            }
            b'{' => {
                if frames.len() == 2 {
                    name = None; // a new item
                }
                frames.push(Frame::Object(None));
            }
            b'[' => frames.push(Frame::Array(0)),
            b'}' | b']' => {
                frames.pop();
            }
            b',' => match frames.last_mut() {
                Some(Frame::Object(key)) => *key = None,
                Some(Frame::Array(position)) => *position += 1,
                None => {}
            },
            _ => {}
        }
        index += 1;
    }
    closed
}

/// The frames below an item's (`{"items":[{...}]}`), or none when the value being read is not
/// inside an item.
fn item_frames<'f>(answer: &[u8], frames: &'f [Frame]) -> &'f [Frame] {
    match frames {
        [
            Frame::Object(Some(items)),
            Frame::Array(_),
            Frame::Object(_),
            ..,
        ] if &answer[items.clone()] == b"items" => &frames[2..],
        _ => &[],
    }
}

/// The JSON pointer inside its item of the value being read (`item`: [`item_frames`]).
fn item_path(answer: &[u8], item: &[Frame]) -> String {
    let mut path = String::new();
    for frame in item {
        path.push('/');
        match frame {
            Frame::Object(key) => path.push_str(&String::from_utf8_lossy(
                key.clone().map_or(&[][..], |key| &answer[key]),
            )),
            Frame::Array(position) => path.push_str(&position.to_string()),
        }
    }
    path
}

/// A JSON string (quotes included) as JSON reads it; as written when it is not one.
fn json_text(quoted: &[u8]) -> String {
    serde_json::from_slice::<String>(quoted)
        .unwrap_or_else(|_| String::from_utf8_lossy(quoted).into_owned())
}

/// A text to write again: the number of answer tokens to keep (the text begins in the token
/// after them, or in the last of them when it straddles the quote) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeBack {
    pub tokens: usize,
    pub reason: &'static str,
}

/// Watches one answer's texts as they are written (see the module docs).
pub struct TextGuard {
    /// Name keys ([`name_key`]) the answer must not use: the request's, and the names written.
    pub avoid: HashSet<String>,
    check: Option<TextCheck>,
    /// Answer tokens kept at the last take-back, and the first tokens tried there.
    at: Option<usize>,
    tried: Vec<LlamaToken>,
    /// The name just written and kept (for the other lanes to avoid), until taken.
    pub closed: Option<String>,
    /// Texts taken back, by reason.
    pub taken_back: BTreeMap<&'static str, usize>,
}

impl TextGuard {
    pub fn new<'n>(
        avoid: impl IntoIterator<Item = &'n str>,
        check: Option<TextCheck>,
    ) -> TextGuard {
        TextGuard {
            avoid: avoid.into_iter().map(name_key).collect(),
            check,
            at: None,
            tried: Vec::new(),
            closed: None,
            taken_back: BTreeMap::new(),
        }
    }

    /// The tokens the model may not write next, when `tokens` answer tokens are kept.
    pub fn banned(&self, tokens: usize) -> &[LlamaToken] {
        match self.at {
            Some(at) if at == tokens => &self.tried,
            _ => &[],
        }
    }

    /// After each decode, with the answer's bytes before it (`before`), its bytes and tokens
    /// now, and the answer's length in bytes after each token (`ends`): judge the texts that
    /// were closed, and say where to go back to when one is refused.
    pub fn step(
        &mut self,
        before: usize,
        answer: &[u8],
        history: &[LlamaToken],
        ends: &[usize],
    ) -> Option<TakeBack> {
        for text in closed_texts(answer, before) {
            let written = json_text(&answer[text.start - 1..=text.end]);
            let is_name = text.path == "/name";
            let key = name_key(&written);
            let reason = match is_name && self.avoid.contains(&key) {
                true => Some("avoided-name"),
                false => self
                    .check
                    .as_ref()
                    .and_then(|check| (check.0)(&text.path, &written, &text.name)),
            };
            if let Some(reason) = reason {
                // Keep the tokens that end before the text begins.
                let tokens = ends.partition_point(|end| *end <= text.start);
                let retries = if is_name { NAME_RETRIES } else { TEXT_RETRIES };
                if tokens > 0 && tokens < history.len() {
                    if self.at != Some(tokens) {
                        self.at = Some(tokens);
                        self.tried.clear();
                    }
                    if self.tried.len() < retries {
                        self.tried.push(history[tokens]);
                        *self.taken_back.entry(reason).or_default() += 1;
                        return Some(TakeBack { tokens, reason });
                    }
                }
            }
            if is_name {
                self.avoid.insert(key.clone());
                self.closed = Some(key);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn texts(answer: &str, from: usize) -> Vec<(String, String, String)> {
        closed_texts(answer.as_bytes(), from)
            .into_iter()
            .map(|text| {
                (
                    text.path,
                    answer[text.start..text.end].to_string(),
                    text.name,
                )
            })
            .collect()
    }

    fn owned(path: &str, text: &str, name: &str) -> (String, String, String) {
        (path.into(), text.into(), name.into())
    }

    #[test]
    fn the_texts_of_items_are_found_with_their_paths() {
        let answer = r#"{"items":[{"name":"Pet Club","description":"Owners \"meet\".","tags":["a","b"],"segmentation":[{"criterion":"age","value":"30"}],"count":3},{"name":"Vet Line","description":"Ca"#;
        assert_eq!(
            texts(answer, 0),
            vec![
                owned("/name", "Pet Club", "Pet Club"),
                owned("/description", r#"Owners \"meet\"."#, "Pet Club"),
                owned("/tags/0", "a", "Pet Club"),
                owned("/tags/1", "b", "Pet Club"),
                owned("/segmentation/0/criterion", "age", "Pet Club"),
                owned("/segmentation/0/value", "30", "Pet Club"),
                owned("/name", "Vet Line", "Vet Line"),
            ]
        );
        // Only what closed from a byte on; nothing outside the items.
        let from = answer.find("Vet Line").unwrap_or(0);
        assert_eq!(
            texts(answer, from),
            vec![owned("/name", "Vet Line", "Vet Line")]
        );
        assert!(texts(r#"{"note":"x","items":[]}"#, 0).is_empty());
        assert!(texts(r#"{"other":[{"name":"x"}]}"#, 0).is_empty());
    }

    fn token(id: i32) -> LlamaToken {
        LlamaToken(id)
    }

    /// An answer being written: its bytes, tokens and ends.
    #[derive(Default)]
    struct Written {
        answer: Vec<u8>,
        history: Vec<LlamaToken>,
        ends: Vec<usize>,
    }

    impl Written {
        /// Writes `pieces` (one token each), `guard` watching; the first take-back, if any.
        fn feed(&mut self, guard: &mut TextGuard, pieces: &[(&str, i32)]) -> Option<TakeBack> {
            for (piece, id) in pieces {
                let before = self.answer.len();
                self.answer.extend(piece.as_bytes());
                self.history.push(token(*id));
                self.ends.push(self.answer.len());
                if let Some(back) = guard.step(before, &self.answer, &self.history, &self.ends) {
                    return Some(back);
                }
            }
            None
        }

        /// Takes the answer back to its first `tokens` tokens.
        fn keep(&mut self, tokens: usize) {
            self.history.truncate(tokens);
            self.ends.truncate(tokens);
            self.answer.truncate(self.ends.last().copied().unwrap_or(0));
        }
    }

    fn back(tokens: usize, reason: &'static str) -> Option<TakeBack> {
        Some(TakeBack { tokens, reason })
    }

    #[test]
    fn a_repeated_name_is_taken_back_to_where_it_began() {
        let mut guard = TextGuard::new(["Loyalty Club"], None);
        let mut written = Written::default();
        // "Loyalty  club," is "Loyalty Club": back to the 2 tokens before it, and its first
        // token is not allowed there on the next try.
        let pieces = [
            (r#"{"items":[{"#, 1),
            (r#""name":""#, 2),
            ("Loyalty", 7),
            ("  club,", 8),
        ];
        assert_eq!(written.feed(&mut guard, &pieces), None);
        assert_eq!(
            written.feed(&mut guard, &[(r#"",""#, 9)]),
            back(2, "avoided-name")
        );
        assert_eq!(guard.banned(2), [token(7)]);
        assert!(guard.banned(3).is_empty());
        written.keep(2);
        // A new name is kept, and then avoided in the rest of the answer.
        let pieces = [
            ("Keeper Hotline", 5),
            (r#"","description":"Calls."},{"name":""#, 6),
            ("keeper hotline", 5),
            (r#"""#, 3),
        ];
        assert_eq!(written.feed(&mut guard, &pieces), back(4, "avoided-name"));
        assert_eq!(guard.taken_back.get("avoided-name"), Some(&2));
    }

    #[test]
    fn any_text_the_check_refuses_is_taken_back_even_across_a_quote() {
        let check = TextCheck(Arc::new(|path: &str, text: &str, name: &str| {
            (path == "/description" && text == name).then_some("thin-description")
        }));
        let mut guard = TextGuard::new([], Some(check));
        // The description's first token holds its opening quote.
        let pieces = [
            (r#"{"items":[{"name":"#, 1),
            ("\"Pet", 2),
            (" Club\"", 3),
            (",\"description\":", 4),
            ("\"Pet", 5),
            (" Club\"", 6),
        ];
        let taken = Written::default().feed(&mut guard, &pieces);
        assert_eq!(taken, back(4, "thin-description"));
        assert_eq!(guard.banned(4), [token(5)]);
    }

    #[test]
    fn a_text_is_let_through_after_its_retries() {
        let mut guard = TextGuard::new(["Club"], None);
        let head = br#"{"items":[{"name":""#;
        let answer = [&head[..], br#"Club""#].concat();
        let ends = [head.len(), answer.len()];
        let mut taken_back = 0;
        for _ in 0..20 {
            match guard.step(head.len(), &answer, &[token(1), token(9)], &ends) {
                Some(_) => taken_back += 1,
                None => break,
            }
        }
        assert_eq!(taken_back, NAME_RETRIES);
        assert_eq!(guard.closed.as_deref(), Some("club"));
    }
}
