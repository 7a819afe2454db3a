//! [`ByteSize`]: a number of bytes as an option takes it, with a unit (`256MiB`), and
//! [`ByteSizeError`], why a text is not one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a text is not a [`ByteSize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    /// No number in front.
    #[error("`{text}` is not a size (e.g. 256MiB)")]
    NotASize {
        /// The text.
        text: String,
    },
    /// A unit that is not one of B, KiB, MiB, GiB, KB, MB, GB.
    #[error("unknown size unit `{unit}` in `{text}` (use B, KiB, MiB, GiB, KB, MB, GB)")]
    UnknownUnit {
        /// The unit.
        unit: String,
        /// The text.
        text: String,
    },
    /// More than `u64::MAX` bytes.
    #[error("`{text}` is too large")]
    TooLarge {
        /// The text.
        text: String,
    },
}

/// A number of bytes, written with a unit: `512`, `64KiB`, `256MiB`, `1GiB` (also `KB`,
/// `MB`, `GB` as powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `256MiB` and friends.
    ///
    /// ```
    /// use corral_proxy::config::ByteSize;
    /// assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(64 << 10)));
    /// ```
    pub fn parse(text: &str) -> Result<ByteSize, ByteSizeError> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits.parse().map_err(|_| ByteSizeError::NotASize {
            text: text.to_owned(),
        })?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(ByteSizeError::UnknownUnit {
                    unit: other.to_owned(),
                    text: text.to_owned(),
                });
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| ByteSizeError::TooLarge {
                text: text.to_owned(),
            })
    }
}

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(text: &str) -> Result<ByteSize, ByteSizeError> {
        ByteSize::parse(text)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        // In bytes, with the unit: `0B`, `100B` (a bare number reads as a count).
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_with_an_unknown_unit_is_refused_and_prints_in_its_largest_exact_unit() {
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert_eq!(ByteSize(64 << 10).to_string(), "64KiB");
        assert_eq!(ByteSize(0).to_string(), "0B");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(ByteSize::parse("0B").unwrap(), ByteSize(0));
    }
}
