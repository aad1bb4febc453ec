//! Buyer personal data (names, phones, addresses, ID numbers) and secrets never reach logs
//! unmasked. [`Pii`] wraps such a value so that `Debug` and `Display` show a masked form;
//! the clear value is only reachable through [`Pii::expose`].

use serde::{Deserialize, Serialize};

/// A personal-data string whose `Debug`/`Display` are masked.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pii(String);

impl Pii {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The clear value, for the operator's fulfilment request and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Pii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", mask(&self.0))
    }
}

impl std::fmt::Display for Pii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&mask(&self.0))
    }
}

/// Masks a personal value, keeping only enough to tell two values apart in a log:
/// phones keep their first 3 and last 4 digits, other text its first character.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let digits = chars.iter().filter(|c| c.is_ascii_digit()).count();
    if digits >= 7 && digits * 10 >= chars.len() * 8 {
        let head: String = chars.iter().take(3).collect();
        let tail: String = chars.iter().skip(chars.len().saturating_sub(4)).collect();
        return format!("{head}****{tail}");
    }
    match chars.first() {
        None => String::new(),
        Some(first) => format!("{first}***"),
    }
}

/// Masks a secret completely, keeping only its length class.
pub fn mask_secret(value: &str) -> String {
    if value.is_empty() { String::new() } else { "***".to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_phones_and_names() {
        assert_eq!(mask("13812345678"), "138****5678");
        assert_eq!(mask("张三丰"), "张***");
        assert_eq!(format!("{:?}", Pii::new("13812345678")), "\"138****5678\"");
        assert_eq!(Pii::new("13812345678").to_string(), "138****5678");
        assert!(!format!("{:?}", Pii::new("浙江省杭州市西湖区文三路 1 号")).contains("文三路"));
    }
}
