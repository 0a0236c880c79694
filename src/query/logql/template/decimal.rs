//! Exact decimal arithmetic for `addf`, `subf`, `mulf` and `divf`: Loki's templates compute
//! these on decimals made from each float's shortest form, so `addf 0.1 0.2` is `0.3`, not
//! `0.30000000000000004`, and `divf` rounds its quotient to 16 decimal places.

/// `coefficient × 10^exponent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Decimal {
    coefficient: i128,
    exponent: i32,
}

/// The decimal places a quotient keeps.
const DIVISION_PLACES: i32 = 16;

fn power_of_ten(exponent: u32) -> Option<i128> {
    10i128.checked_pow(exponent)
}

impl Decimal {
    /// The decimal a float prints as at its shortest; NaN and infinities have none.
    pub(super) fn from_f64(value: f64) -> Result<Decimal, String> {
        if !value.is_finite() {
            return Err(format!("cannot create a decimal from {}", if value.is_nan() { "NaN" } else { "Inf" }));
        }
        let text = format!("{:e}", value.abs());
        let (mantissa, exponent) = text.split_once('e').unwrap_or((text.as_str(), "0"));
        let exponent: i32 = exponent.parse().map_err(|_| format!("cannot read {value} as a decimal"))?;
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = format!("{whole}{fraction}");
        let coefficient: i128 = digits.parse().map_err(|_| format!("cannot read {value} as a decimal"))?;
        let coefficient = if value < 0.0 { -coefficient } else { coefficient };
        Ok(Decimal { coefficient, exponent: exponent - fraction.len() as i32 })
    }

    /// The nearest float.
    pub(super) fn to_f64(self) -> f64 {
        format!("{}e{}", self.coefficient, self.exponent).parse().unwrap_or(f64::NAN)
    }

    /// Both coefficients scaled to the smaller exponent; `None` when that overflows.
    fn aligned(self, other: Decimal) -> Option<(i128, i128, i32)> {
        let exponent = self.exponent.min(other.exponent);
        let scale = |decimal: Decimal| -> Option<i128> {
            let shift = u32::try_from(decimal.exponent - exponent).ok()?;
            decimal.coefficient.checked_mul(power_of_ten(shift)?)
        };
        Some((scale(self)?, scale(other)?, exponent))
    }

    pub(super) fn add(self, other: Decimal) -> Option<Decimal> {
        let (left, right, exponent) = self.aligned(other)?;
        Some(Decimal { coefficient: left.checked_add(right)?, exponent })
    }

    pub(super) fn sub(self, other: Decimal) -> Option<Decimal> {
        let (left, right, exponent) = self.aligned(other)?;
        Some(Decimal { coefficient: left.checked_sub(right)?, exponent })
    }

    pub(super) fn mul(self, other: Decimal) -> Option<Decimal> {
        Some(Decimal {
            coefficient: self.coefficient.checked_mul(other.coefficient)?,
            exponent: self.exponent.checked_add(other.exponent)?,
        })
    }

    /// The quotient rounded half away from zero to 16 decimal places; an error for a zero
    /// divisor, `None` when the exact computation overflows.
    pub(super) fn div(self, other: Decimal) -> Result<Option<Decimal>, String> {
        if other.coefficient == 0 {
            return Err("decimal division by 0".to_string());
        }
        let shift = i64::from(self.exponent) - i64::from(other.exponent) + i64::from(DIVISION_PLACES);
        let scaled = || -> Option<Decimal> {
            let (numerator, denominator) = if shift >= 0 {
                (self.coefficient.checked_mul(power_of_ten(u32::try_from(shift).ok()?)?)?, other.coefficient)
            } else {
                (self.coefficient, other.coefficient.checked_mul(power_of_ten(u32::try_from(-shift).ok()?)?)?)
            };
            let mut quotient = numerator.checked_div(denominator)?;
            let remainder = numerator.checked_rem(denominator)?;
            if remainder.checked_mul(2)?.unsigned_abs() >= denominator.unsigned_abs() {
                quotient += if (numerator < 0) == (denominator < 0) { 1 } else { -1 };
            }
            Some(Decimal { coefficient: quotient, exponent: -DIVISION_PLACES })
        };
        Ok(scaled())
    }
}
