//! Resource quantities (`500m`, `1.5`, `128Mi`, `1G`, `1e3`) as milli-units,
//! enough to compare pod requests with node allocatable.
//!
//! Format: k8s.io/apimachinery `pkg/api/resource/quantity.go` (decimal SI,
//! binary SI and decimal exponent suffixes).

/// Parses a quantity into milli-units (`"250m"` -> 250, `"1Ki"` -> 1_024_000).
/// Returns `None` for text that is not a quantity.
pub fn milli(text: &str) -> Option<i128> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    Some((value * factor * 1000.0).round() as i128)
}

/// Formats milli-units for people, the way the resource is usually written:
/// CPU as cores or millicores, memory in binary units.
pub fn human(resource: &str, milli: i128) -> String {
    if resource == "cpu" {
        return if milli % 1000 == 0 {
            format!("{}", milli / 1000)
        } else {
            format!("{milli}m")
        };
    }
    let units = milli / 1000;
    if resource == "memory" || resource.ends_with("storage") {
        for (suffix, size) in [("Gi", 1i128 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
            if units >= size && units % size == 0 {
                return format!("{}{suffix}", units / size);
            }
        }
        for (suffix, size) in [("Gi", 1i128 << 30), ("Mi", 1 << 20)] {
            if units >= size {
                return format!("{:.1}{suffix}", units as f64 / size as f64);
            }
        }
    }
    format!("{units}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_suffixes_kubernetes_writes() {
        assert_eq!(milli("250m"), Some(250));
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("0.5"), Some(500));
        assert_eq!(milli("1Ki"), Some(1_024_000));
        assert_eq!(milli("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(milli("1G"), Some(1_000_000_000_000));
        assert_eq!(milli("1e3"), Some(1_000_000));
        assert_eq!(milli("110"), Some(110_000));
        assert_eq!(milli(""), None);
        assert_eq!(milli("lots"), None);
        assert_eq!(milli("5Xi"), None);
    }

    #[test]
    fn prints_for_people() {
        assert_eq!(human("cpu", 1500), "1500m");
        assert_eq!(human("cpu", 2000), "2");
        assert_eq!(human("memory", 128 * 1024 * 1024 * 1000), "128Mi");
        assert_eq!(human("memory", 3 * (1 << 30) * 1000), "3Gi");
        assert_eq!(human("pods", 110_000), "110");
    }
}
