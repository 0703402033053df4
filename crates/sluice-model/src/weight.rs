//! Traffic weights in basis points (0.01%), so that a first step of 0.1% is
//! expressible; users read and write percentages.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A share of traffic in basis points: 0 (none) to 10,000 (all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(u16);

/// Why a number is not a weight.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightError {
    #[error("weight {0} is above 100")]
    AboveHundred(f64),
    #[error("weight {0} is below 0")]
    Negative(f64),
    #[error("weight {0} is not a number")]
    NotFinite(f64),
    #[error("weight {0} is finer than 0.01%")]
    TooFine(f64),
}

// === impl Weight ===

impl Weight {
    pub const ZERO: Weight = Weight(0);
    pub const FULL: Weight = Weight(10_000);

    /// A weight from basis points; `None` above 10,000.
    pub const fn from_basis_points(bp: u16) -> Option<Weight> {
        if bp <= 10_000 {
            Some(Weight(bp))
        } else {
            None
        }
    }

    /// A weight from a percentage (`12.5` is 12.5%), exact to 0.01%.
    pub fn from_percent(percent: f64) -> Result<Weight, WeightError> {
        if !percent.is_finite() {
            return Err(WeightError::NotFinite(percent));
        }
        if percent < 0.0 {
            return Err(WeightError::Negative(percent));
        }
        if percent > 100.0 {
            return Err(WeightError::AboveHundred(percent));
        }
        let bp = (percent * 100.0).round();
        if (bp - percent * 100.0).abs() > 1e-6 {
            return Err(WeightError::TooFine(percent));
        }
        Ok(Weight(bp as u16))
    }

    pub const fn basis_points(self) -> u16 {
        self.0
    }

    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    /// The remaining share (what stable gets when this is canary's).
    pub const fn complement(self) -> Weight {
        Weight(10_000 - self.0)
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 100 == 0 {
            write!(f, "{}%", self.0 / 100)
        } else {
            write!(f, "{}%", self.percent())
        }
    }
}

impl Serialize for Weight {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.percent())
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let percent = f64::deserialize(d)?;
        Weight::from_percent(percent).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percent_round_trip_and_bounds() {
        assert_eq!(Weight::from_percent(0.1).unwrap().basis_points(), 10);
        assert_eq!(Weight::from_percent(100.0).unwrap(), Weight::FULL);
        assert_eq!(
            Weight::from_percent(120.0).unwrap_err().to_string(),
            "weight 120 is above 100"
        );
        assert!(matches!(
            Weight::from_percent(-1.0),
            Err(WeightError::Negative(_))
        ));
        assert!(matches!(
            Weight::from_percent(0.001),
            Err(WeightError::TooFine(_))
        ));
        assert_eq!(Weight::from_percent(12.5).unwrap().to_string(), "12.5%");
        assert_eq!(Weight::from_percent(25.0).unwrap().to_string(), "25%");
    }

    proptest! {
        #[test]
        fn every_basis_point_round_trips(bp in 0u16..=10_000) {
            let w = Weight::from_basis_points(bp).unwrap();
            prop_assert_eq!(Weight::from_percent(w.percent()).unwrap(), w);
            prop_assert_eq!(w.complement().complement(), w);
        }
    }
}
