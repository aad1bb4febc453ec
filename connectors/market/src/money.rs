//! Money at the edge: marketplaces send yuan as decimal strings ("200.07"); flagsync keeps
//! integer fen everywhere else.

use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Parses a yuan amount ("200.07", "15", "0.5") into fen. Rejects negative amounts, more
/// than two decimals that are not zero, and anything that is not a number.
pub fn yuan_to_fen(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let value = Decimal::from_str(text).map_err(|e| format!("amount {text:?} is not a number: {e}"))?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(format!("amount {text:?} is negative"));
    }
    let fen =
        value.checked_mul(Decimal::ONE_HUNDRED).ok_or_else(|| format!("amount {text:?} is out of range"))?;
    if fen.fract() != Decimal::ZERO {
        return Err(format!("amount {text:?} has fractions of a fen"));
    }
    fen.to_i64().ok_or_else(|| format!("amount {text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_strings_become_fen() {
        assert_eq!(yuan_to_fen("200.07"), Ok(20007));
        assert_eq!(yuan_to_fen("15"), Ok(1500));
        assert_eq!(yuan_to_fen("0.50"), Ok(50));
        assert_eq!(yuan_to_fen("0.00"), Ok(0));
        assert!(yuan_to_fen("1.005").is_err());
        assert!(yuan_to_fen("-1").is_err());
        assert!(yuan_to_fen("abc").is_err());
    }
}
